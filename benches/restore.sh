#!/usr/bin/env bash
# Restore speed: `monitord restore --at` the oldest sample of a history on a
# 100,000-file tree (~140 MB), against rdiff-backup's `restore --at` of the
# same history. The goal: at least 10x faster than rdiff-backup.
#
# Run from anywhere, as root (to drop the page cache and to install
# rdiff-backup):
#
#     benches/restore.sh
#
# What it does:
#   1. If `rdiff-backup` is missing it tries `apt-get update && apt-get
#      install -y rdiff-backup`; if that fails it says so and runs only the
#      monitord half.
#   2. Builds a tree of FILES text files (~1.4 KB each) in DIRS directories
#      in a temporary directory under BENCH_TMPDIR (default /tmp, never the
#      repository), with a `sleep` whose working directory is the tree.
#   3. `cargo build --release`, then starts `monitord -d --period 600000
#      --record files` on the sleep (the baseline is the first sample) and
#      takes the first rdiff-backup backup of the same tree. Then INCREMENTS
#      times: append a line to K files, `monitord ctl sample`, `rdiff-backup
#      backup`. Both tools see exactly the same history.
#   4. Times the restore of the oldest state (monitord: the baseline's seq;
#      rdiff-backup: `--at <INCREMENTS>B`) and of the newest state, each the
#      median of RUNS runs (rdiff-backup's newest: one run, it is as slow
#      as its oldest) into a fresh directory, the page cache dropped
#      before every run when /proc/sys/vm/drop_caches is writable (the report
#      says whether it was). Every restored tree is checked against a
#      checksum of the original tree taken at that point
#      (`find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum`).
#   5. Prints a table: the times, the ratio (goal >= 10x), and what each
#      tool's capture cost, with the load average (the machine may be
#      shared; both tools run in turn on it, so the ratio is the figure).
#
# At full size a run takes 10-20 minutes, most of it rdiff-backup's.
#
# Knobs (environment): FILES (100000), DIRS (1000), INCREMENTS (5), K (100
# files appended to per increment), RUNS (3), BENCH_TMPDIR (/tmp),
# NO_RDIFF=1 to skip rdiff-backup, NO_INSTALL=1 to never run apt-get.
# A quick smoke run: FILES=2000 DIRS=20 K=10 RUNS=1 benches/restore.sh
#
# The daemon, the sleep and the temporary directory are cleaned up on any
# exit. Exit status: 0 when every restored tree matched, 1 otherwise.
set -euo pipefail
export LC_ALL=C

FILES=${FILES:-100000}
DIRS=${DIRS:-1000}
INCREMENTS=${INCREMENTS:-5}
K=${K:-100}
RUNS=${RUNS:-3}
BENCH_TMPDIR=${BENCH_TMPDIR:-/tmp}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/monitord

say() { printf '%s\n' "$*" >&2; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%s", v[int((NR + 1) / 2)] }'; }
checksum() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1); }
count() { find "$1" -type f | wc -l; }

# --- clean-up ---------------------------------------------------------------
WORK=
TARGET_PID=
STORE=
cleanup() {
    set +e
    if [[ -n $STORE && -e $STORE/monitord.pid ]]; then
        local dpid
        dpid=$(cat "$STORE/monitord.pid" 2>/dev/null)
        timeout 20 "$BIN" ctl --store "$STORE" stop >/dev/null 2>&1
        for _ in $(seq 50); do
            [[ -n $dpid ]] && kill -0 "$dpid" 2>/dev/null || break
            sleep 0.1
        done
        [[ -n $dpid ]] && kill -0 "$dpid" 2>/dev/null && kill "$dpid"
    fi
    [[ -n $TARGET_PID ]] && kill "$TARGET_PID" 2>/dev/null && wait "$TARGET_PID" 2>/dev/null
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- page cache -------------------------------------------------------------
DROPPED=no
if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    DROPPED=yes
fi
drop_cache() { if [[ $DROPPED == yes ]]; then sync && echo 3 >/proc/sys/vm/drop_caches; fi; }

# --- rdiff-backup -----------------------------------------------------------
RDIFF=yes
RDIFF_WHY=
if [[ ${NO_RDIFF:-0} == 1 ]]; then
    RDIFF=no RDIFF_WHY="skipped (NO_RDIFF=1)"
elif ! command -v rdiff-backup >/dev/null; then
    if [[ ${NO_INSTALL:-0} == 1 ]]; then
        RDIFF=no RDIFF_WHY="not installed (NO_INSTALL=1)"
    elif [[ $(id -u) != 0 ]]; then
        RDIFF=no RDIFF_WHY="not installed, and not root to apt-get install it"
    else
        say "rdiff-backup is missing: installing it from the Debian archive"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rdiff-backup; } >&2 \
            || ! command -v rdiff-backup >/dev/null; then
            RDIFF=no RDIFF_WHY="not installed: apt-get install rdiff-backup failed"
        fi
    fi
fi
if [[ $RDIFF == no ]]; then
    say "rdiff-backup: $RDIFF_WHY; running only the monitord half"
else
    RDIFF_VERSION=$(rdiff-backup --version 2>&1 | head -n1)
    # 2.1 and later take actions (`backup`, `restore --at`); older ones the
    # classic `SRC DEST` and `-r TIME`.
    if rdiff-backup restore --help >/dev/null 2>&1; then
        rdiff_backup() { rdiff-backup backup "$1" "$2"; }
        rdiff_restore() { rdiff-backup restore --at "$1" "$2" "$3"; }
    else
        rdiff_backup() { rdiff-backup "$1" "$2"; }
        rdiff_restore() { rdiff-backup -r "$1" "$2" "$3"; }
    fi
    say "using $RDIFF_VERSION"
fi

# --- build ------------------------------------------------------------------
say "building the release binary"
(cd "$ROOT" && cargo build --release --quiet)

# --- the tree ---------------------------------------------------------------
WORK=$(mktemp -d "$BENCH_TMPDIR/monitord-restore-bench.XXXXXX")
case $WORK/ in "$ROOT"/*)
    say "BENCH_TMPDIR is inside the repository; choose another"
    exit 2
    ;;
esac
TREE=$WORK/tree
STORE=$WORK/store
REPO=$WORK/rdiff
mkdir -p "$TREE"

say "building $FILES files in $DIRS directories under $TREE"
t0=$(now)
awk -v n="$FILES" -v d="$DIRS" -v root="$TREE" 'BEGIN {
    for (i = 0; i < d; i++) dirs = dirs sprintf(" %s/d%04d", root, i)
    system("mkdir -p" dirs)
    for (i = 0; i < n; i++) {
        path = sprintf("%s/d%04d/f%06d.txt", root, i % d, i)
        for (l = 0; l < 21; l++)
            printf "%06d:%02d the quick brown fox jumps over the lazy dog; value %5d\n", i, l, (i * 31 + l * 7) % 99991 > path
        close(path)
    }
}'
TREE_MB=$(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.1f", s / 1e6 }')
say "  $(count "$TREE") files, $TREE_MB MB, in $(since "$t0") s"
SUM_OLDEST=$(checksum "$TREE")

(cd "$TREE" && exec sleep 100000) &
TARGET_PID=$!

# Append one line to K files, a different set each increment, spread over
# the directories (7919 is prime, so the walk does not repeat).
increment() {
    awk -v n="$FILES" -v d="$DIRS" -v k="$K" -v r="$1" -v root="$TREE" 'BEGIN {
        for (j = 0; j < k; j++) {
            i = ((r * k + j) * 7919) % n
            path = sprintf("%s/d%04d/f%06d.txt", root, i % d, i)
            printf "increment %d appended this line to file %06d\n", r, i >> path
            close(path)
        }
    }'
}

# --- capture: baseline, then the increments ---------------------------------
say "starting monitord (baseline of the tree)"
t0=$(now)
"$BIN" -d --period 600000 --record files --store "$STORE" "$TARGET_PID"
MD_BASELINE=$(since "$t0")
RD_FIRST=
if [[ $RDIFF == yes ]]; then
    say "rdiff-backup: first backup"
    t0=$(now)
    rdiff_backup "$TREE" "$REPO" >/dev/null
    RD_FIRST=$(since "$t0")
fi

MD_SAMPLES=() RD_BACKUPS=()
for r in $(seq 1 "$INCREMENTS"); do
    increment "$r"
    t0=$(now)
    "$BIN" ctl --store "$STORE" sample >/dev/null
    MD_SAMPLES+=("$(since "$t0")")
    if [[ $RDIFF == yes ]]; then
        # rdiff-backup names increments by the second and refuses a backup
        # in the same second as the last (small trees back up that fast).
        sleep 1
        t0=$(now)
        rdiff_backup "$TREE" "$REPO" >/dev/null
        RD_BACKUPS+=("$(since "$t0")")
    fi
    say "  increment $r: monitord sample ${MD_SAMPLES[-1]} s${RD_BACKUPS:+, rdiff-backup backup ${RD_BACKUPS[-1]} s}"
done
SUM_NEWEST=$(checksum "$TREE")

# The baseline's seq and the newest sample's, from the journal.
LOG=$("$BIN" log --store "$STORE" --json)
OLDEST_SEQ=$(printf '%s\n' "$LOG" | grep '"kind":"baseline"' | tail -n1 | sed 's/.*"seq":\([0-9]*\).*/\1/')
NEWEST_SEQ=$(printf '%s\n' "$LOG" | grep '"kind":"sample"' | tail -n1 | sed 's/.*"seq":\([0-9]*\).*/\1/')
SAMPLES=$(printf '%s\n' "$LOG" | grep -c '"kind":"sample"' || true)
if [[ -z $OLDEST_SEQ || -z $NEWEST_SEQ || $SAMPLES != "$INCREMENTS" ]]; then
    say "unexpected journal: baseline seq '$OLDEST_SEQ', newest sample '$NEWEST_SEQ', $SAMPLES samples (wanted $INCREMENTS)"
    printf '%s\n' "$LOG" | cut -c1-200 >&2
    exit 1
fi

# --- restores ---------------------------------------------------------------
# Every run restores into a directory of its own, and none is removed until
# the end: on ext4 without a journal (as here) the inode allocator passes
# over inodes freed in the last 60 s (360 s while their table block is
# dirty), one lookup each, so deleting a 100,000-file tree just before a
# run makes every file the next run creates scan past all of them. That
# cost came from the bench, not from either tool, and it swamped the run
# that followed (a restore took 41 s instead of 7 s).
FAILED=0
RUN_NO=0
# time_restore RUNS LABEL WANT_SUM CMD... (DEST is appended); sets MEDIAN,
# and FAILED when a restored tree differs.
time_restore() {
    local runs=$1 label=$2 want=$3
    shift 3
    local dest times=() i t0 got
    for i in $(seq 1 "$runs"); do
        RUN_NO=$((RUN_NO + 1))
        dest=$WORK/dest.$RUN_NO
        drop_cache
        t0=$(now)
        "$@" "$dest" >/dev/null
        times+=("$(since "$t0")")
        got=$(checksum "$dest")
        if [[ $got != "$want" ]]; then
            say "  $label run $i: restored tree differs ($(count "$dest") files, sha256 $got, wanted $want)"
            FAILED=1
        fi
    done
    say "  $label: ${times[*]} s"
    MEDIAN=$(median "${times[@]}")
}

time_restore "$RUNS" "monitord --at $OLDEST_SEQ" "$SUM_OLDEST" "$BIN" restore --store "$STORE" --at "$OLDEST_SEQ"
MD_OLD=$MEDIAN
time_restore "$RUNS" "monitord --at $NEWEST_SEQ" "$SUM_NEWEST" "$BIN" restore --store "$STORE" --at "$NEWEST_SEQ"
MD_NEW=$MEDIAN
RD_OLD= RD_NEW=
if [[ $RDIFF == yes ]]; then
    time_restore "$RUNS" "rdiff-backup --at ${INCREMENTS}B" "$SUM_OLDEST" rdiff_restore "${INCREMENTS}B" "$REPO"
    RD_OLD=$MEDIAN
    time_restore 1 "rdiff-backup --at now" "$SUM_NEWEST" rdiff_restore now "$REPO"
    RD_NEW=$MEDIAN
fi

# --- report -----------------------------------------------------------------
ratio() { if [[ -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", b / a }'; else printf 'n/a'; fi; }
secs() { if [[ -n $1 ]]; then printf '%s s' "$1"; else printf 'n/a'; fi; }

printf '\nrestore of a %s-file tree (%s MB, %s directories) after %s increments of %s appended files\n' \
    "$FILES" "$TREE_MB" "$DIRS" "$INCREMENTS" "$K"
printf 'median of %s runs into a fresh directory; page cache dropped before each run: %s\n' "$RUNS" "$DROPPED"
printf 'rdiff-backup newest: one run (each takes as long as its oldest restore)\n'
printf 'load average at the start: %s; at the end: %s\n' "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'rdiff-backup: %s\n\n' "${RDIFF_VERSION:-$RDIFF_WHY}"
printf '%-34s %12s %14s %12s\n' "" "monitord" "rdiff-backup" "ratio"
printf '%-34s %12s %14s %12s\n' "restore --at oldest (baseline)" "$(secs "$MD_OLD")" "$(secs "$RD_OLD")" "$(ratio "$MD_OLD" "$RD_OLD")"
printf '%-34s %12s %14s %12s\n' "restore --at newest" "$(secs "$MD_NEW")" "$(secs "$RD_NEW")" "$(ratio "$MD_NEW" "$RD_NEW")"
printf '%-34s %12s %14s %12s\n' "capture: baseline / first backup" "$(secs "$MD_BASELINE")" "$(secs "$RD_FIRST")" "$(ratio "$MD_BASELINE" "$RD_FIRST")"
RD_INC=
[[ $RDIFF == yes ]] && RD_INC=$(median "${RD_BACKUPS[@]}")
printf '%-34s %12s %14s %12s\n' "capture: one increment (median)" "$(secs "$(median "${MD_SAMPLES[@]}")")" "$(secs "$RD_INC")" \
    "$(ratio "$(median "${MD_SAMPLES[@]}")" "$RD_INC")"
if [[ -n $RD_OLD ]]; then
    if awk -v a="$MD_OLD" -v b="$RD_OLD" 'BEGIN { exit !(b >= 10 * a) }'; then
        printf '\ngoal (oldest restore >= 10x faster than rdiff-backup): met\n'
    else
        printf '\ngoal (oldest restore >= 10x faster than rdiff-backup): NOT met\n'
    fi
else
    printf '\ngoal (oldest restore >= 10x faster than rdiff-backup): not measured, rdiff-backup %s\n' "$RDIFF_WHY"
fi
if [[ $FAILED != 0 ]]; then
    printf 'a restored tree did not match the original: see above\n'
fi
exit "$FAILED"
