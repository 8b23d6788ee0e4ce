//! Drawing the replay screen: the header, the file list, the diff or
//! content view, the map changes, the timeline (with marks) and the status
//! line, for any ratatui backend.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};

use super::{App, Play, Scale, View};
use crate::journal::record::{Body, Change};
use crate::render::human;
use crate::replay::{Entry, Source};

impl<S: Source> App<S> {
    /// The screen this app draws on a `width` × `height` terminal, as
    /// plain text (one line per row): for tests and snapshots.
    pub fn screen_text(&self, width: u16, height: u16) -> String {
        let Ok(mut terminal) = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height));
        let _ = terminal.draw(|f| self.draw(f));
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    /// Draw the whole screen.
    pub fn draw(&self, frame: &mut Frame<'_>) {
        let [header, main, maps, timeline, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let [files, view] =
            Layout::horizontal([Constraint::Percentage(30), Constraint::Percentage(70)]).areas(main);
        frame.render_widget(Paragraph::new(self.header_line()), header);
        self.draw_files(frame, files);
        self.draw_view(frame, view);
        self.draw_maps(frame, maps);
        self.draw_timeline(frame, timeline);
        frame.render_widget(Paragraph::new(self.status_line()), status);
    }

    fn header_line(&self) -> Line<'static> {
        let entry = self.replay.current();
        let time = i64::try_from(entry.time_us)
            .ok()
            .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
            .map_or_else(
                || "?".to_string(),
                |t| t.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            );
        let summary = human::summary(entry.seq, entry.time_us, &entry.record, false);
        // The summary's detail, without its "#seq time kind " prefix.
        let detail = summary.splitn(4, ' ').nth(3).unwrap_or_default().to_string();
        let bold = Style::new().add_modifier(Modifier::BOLD);
        Line::from(vec![
            Span::styled(format!("#{}", entry.seq), bold),
            Span::raw(format!("  {time}  ")),
            Span::styled(entry.record.kind().name(), bold),
            Span::raw(format!("  {detail}")),
            Span::raw(format!("   [{}/{}]", self.replay.cursor() + 1, self.replay.entries().len())),
        ])
    }

    fn draw_files(&self, frame: &mut Frame<'_>, area: Rect) {
        let block =
            Block::default().borders(Borders::ALL).title(format!("Files ({})", self.replay.tree().len()));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let height = inner.height as usize;
        // Only the rows around the selection: drawing costs what the pane
        // shows, not what the tree holds.
        let rows = self.replay.rows_around(self.selected.as_deref(), height, height);
        let at = rows.iter().position(|r| r.path.is_some() && r.path == self.selected).unwrap_or(0);
        let top = at.saturating_sub(height.saturating_sub(1) / 2).min(rows.len().saturating_sub(height));
        let lines: Vec<Line<'_>> = rows[top..]
            .iter()
            .take(height)
            .enumerate()
            .map(|(i, row)| {
                let (mark, color) = match row.mark {
                    Some(Change::Created) => ("C", Color::Green),
                    Some(Change::Modified) => ("M", Color::Yellow),
                    Some(Change::Deleted) => ("D", Color::Red),
                    Some(Change::Renamed) => ("R", Color::Cyan),
                    Some(Change::Mode) => ("P", Color::Magenta),
                    None => (" ", Color::Reset),
                };
                let mut style = Style::new();
                if row.path.is_none() {
                    style = style.fg(Color::Blue);
                } else if row.mark.is_some() {
                    style = style.fg(color);
                }
                if top + i == at && row.path.is_some() {
                    style = style.add_modifier(Modifier::REVERSED);
                }
                Line::from(vec![
                    Span::styled(mark, Style::new().fg(color).add_modifier(Modifier::BOLD)),
                    Span::raw(" ".repeat(1 + 2 * row.depth)),
                    Span::styled(row.name.clone(), style),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }

    fn draw_view(&self, frame: &mut Frame<'_>, area: Rect) {
        let seq = self.replay.current().seq;
        let Some(path) = &self.selected else {
            let block = Block::default().borders(Borders::ALL).title("no file");
            frame.render_widget(Paragraph::new("The tree is empty at this record.").block(block), area);
            return;
        };
        let mode = self.replay.mode_of(path).map(|m| format!(" ({m:04o})")).unwrap_or_default();
        let name = format!("{}{mode}", human::sanitize(path));
        let diff = if self.view == View::Diff { self.replay.diff_of(path) } else { None };
        let height = area.height.saturating_sub(2) as usize;
        let skip = self.scroll as usize;
        let (title, lines): (String, Vec<Line<'_>>) = match diff {
            Some(diff) => (
                format!("{name}: diff at #{seq}"),
                text_lines(&diff).skip(skip).take(height).map(|l| diff_line(&l)).collect(),
            ),
            None => match self.replay.content_of(path) {
                Some(content) => (
                    format!("{name}: as of #{seq}"),
                    text_lines(content)
                        .enumerate()
                        .skip(skip)
                        .take(height)
                        .map(|(n, l)| {
                            Line::from(vec![
                                Span::styled(format!("{:>5} ", n + 1), Style::new().fg(Color::DarkGray)),
                                Span::raw(l),
                            ])
                        })
                        .collect(),
                ),
                None => (format!("{name}: not present at #{seq}"), Vec::new()),
            },
        };
        let block = Block::default().borders(Borders::ALL).title(title);
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_maps(&self, frame: &mut Frame<'_>, area: Rect) {
        let block = Block::default().borders(Borders::ALL).title("Maps");
        let height = area.height.saturating_sub(2) as usize;
        let lines: Vec<Line<'_>> = match &self.replay.current().record.body {
            Body::Sample(s) if s.maps.added.is_empty() && s.maps.removed.is_empty() => {
                vec![Line::styled("no map changes", Style::new().fg(Color::DarkGray))]
            }
            Body::Sample(s) => {
                let added = s.maps.added.iter().map(|l| ("+ ", Color::Green, l));
                let removed = s.maps.removed.iter().map(|l| ("- ", Color::Red, l));
                let mut lines: Vec<Line<'_>> = removed
                    .chain(added)
                    .take(height)
                    .map(|(sign, color, l)| Line::styled(format!("{sign}{}", human::sanitize(l)), color))
                    .collect();
                let total = s.maps.added.len() + s.maps.removed.len();
                if total > height && height > 0 {
                    lines.truncate(height - 1);
                    lines.push(Line::raw(format!("… {} more", total - (height - 1))));
                }
                lines
            }
            Body::Baseline(b) => vec![Line::raw(format!("{} mappings at the baseline", b.maps.len()))],
            _ => vec![Line::styled("no map changes", Style::new().fg(Color::DarkGray))],
        };
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_timeline(&self, frame: &mut Frame<'_>, area: Rect) {
        let entries = self.replay.entries();
        let block = Block::default().borders(Borders::ALL).title(format!(
            "Timeline #{}..#{}",
            entries.first().map_or(0, |e| e.seq),
            entries.last().map_or(0, |e| e.seq)
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        const LABEL: u16 = 6;
        let width = inner.width.saturating_sub(LABEL) as usize;
        if width == 0 || inner.height < 3 {
            return;
        }
        // A window of the timeline around the cursor, as wide as the screen.
        let cursor = self.replay.cursor();
        let start = cursor.saturating_sub(width / 2).min(entries.len().saturating_sub(width));
        let window = &entries[start..entries.len().min(start + width)];
        let lines: Vec<u64> = window.iter().map(Entry::lines_changed).collect();
        let Scale { max_lines, max_rss, any_rss, .. } = self.scale;
        let rss: Vec<u64> =
            if any_rss { window.iter().map(|e| e.rss_kib().unwrap_or(0)).collect() } else { Vec::new() };
        let rows = Layout::vertical([Constraint::Length(1); 3]).split(inner);
        for (row, label) in rows.iter().zip(["lines", "rss", ""]) {
            frame.render_widget(Paragraph::new(label), Rect { width: LABEL, ..*row });
        }
        let graph = |row: Rect| Rect { x: row.x + LABEL, width: row.width - LABEL, ..row };
        frame.render_widget(
            Sparkline::default().data(lines).max(max_lines).style(Style::new().fg(Color::Yellow)),
            graph(rows[0]),
        );
        frame
            .render_widget(Sparkline::default().data(rss).max(max_rss).style(Color::Magenta), graph(rows[1]));
        // Marks as ◆ under their records; the cursor as ▲ with its seq (and
        // its mark's name).
        let offset = cursor - start;
        let mut row: Vec<char> = window.iter().map(|e| if e.mark().is_some() { '◆' } else { ' ' }).collect();
        if let Some(at) = row.get_mut(offset) {
            *at = '▲';
        }
        let current = self.replay.current();
        let name = current.mark().map(|n| format!(" @{n}")).unwrap_or_default();
        let marker = format!("{} #{}{name}", row.iter().collect::<String>().trim_end(), current.seq);
        frame.render_widget(Paragraph::new(marker), graph(rows[2]));
    }

    fn status_line(&self) -> Line<'static> {
        if let Some(query) = &self.search {
            return Line::from(format!("find: {query}▏  (Enter: select, Esc: cancel)"));
        }
        if let Some(point) = &self.goto {
            return Line::from(format!(
                "go to: {point}▏  (a seq, a time, -10min, @MARK; Enter: go, Esc: cancel)"
            ));
        }
        if let Some(text) = self.message.as_deref().or(self.replay.problem()) {
            return Line::styled(text.to_string(), Style::new().fg(Color::Red));
        }
        let speed = match self.speed_exp {
            0 => String::new(),
            e if e > 0 => format!(" ×{}", 1 << e),
            e => format!(" ×1/{}", 1 << -e),
        };
        let play = match self.play {
            Play::Stopped => format!("paused{speed}"),
            Play::Forward => format!("▶ playing{speed}"),
            Play::Backward => format!("◀ playing back{speed}"),
        };
        Line::from(vec![
            Span::styled(play, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(
                "  ←/→ step  Home/End  g go to  n/N file's next/prev change  Space play  r back  +/- speed  ↑/↓ file  Enter diff/content  / find  q quit",
            ),
        ])
    }
}

/// Lines of text for display: lossily decoded, tabs expanded, control
/// characters escaped (the tree belongs to another process).
fn text_lines(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes.split_inclusive(|&b| b == b'\n').map(|line| {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        human::sanitize(
            &line.iter().flat_map(|&b| if b == b'\t' { vec![b' '; 4] } else { vec![b] }).collect::<Vec<u8>>(),
        )
    })
}

fn diff_line(line: &str) -> Line<'static> {
    let style = if line.starts_with("+++") || line.starts_with("---") {
        Style::new().add_modifier(Modifier::BOLD)
    } else if line.starts_with('+') {
        Style::new().fg(Color::Green)
    } else if line.starts_with('-') {
        Style::new().fg(Color::Red)
    } else if line.starts_with('@') {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    Line::styled(line.to_string(), style)
}
