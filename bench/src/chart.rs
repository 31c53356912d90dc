//! A small SVG bar chart, written by hand.
//!
//! A few panels of horizontal bars (one bar per server) is all the benchmark page needs; writing
//! the SVG directly keeps a plotting library and its fonts out of the build.

use std::fmt::Write as _;

/// One panel: a title and one bar per server (`None`: no result).
#[derive(Debug, Clone)]
pub struct Panel {
    /// Panel heading, with its unit.
    pub title: String,
    /// `(server, value)` in display order.
    pub bars: Vec<(String, Option<f64>)>,
    /// Decimals of the value labels.
    pub decimals: usize,
}

const WIDTH: f64 = 900.0;
const PANEL_WIDTH: f64 = 430.0;
const BAR_HEIGHT: f64 = 20.0;
const BAR_GAP: f64 = 6.0;
const LABEL_WIDTH: f64 = 130.0;
const TITLE_HEIGHT: f64 = 30.0;
const PANEL_GAP: f64 = 24.0;

/// Renders `panels` two per row; the `baseline` server's bars are drawn in a stronger colour.
pub fn render(panels: &[Panel], baseline: &str) -> String {
    let rows = panels.len().div_ceil(2);
    let servers = panels.iter().map(|p| p.bars.len()).max().unwrap_or(0) as f64;
    let panel_height = TITLE_HEIGHT + servers * (BAR_HEIGHT + BAR_GAP) + 10.0;
    let height = rows as f64 * (panel_height + PANEL_GAP) + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, panel) in panels.iter().enumerate() {
        let x0 = 15.0 + (i % 2) as f64 * (PANEL_WIDTH + 25.0);
        let y0 = 15.0 + (i / 2) as f64 * (panel_height + PANEL_GAP);
        draw_panel(&mut svg, panel, baseline, x0, y0);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(svg: &mut String, panel: &Panel, baseline: &str, x0: f64, y0: f64) {
    let _ = writeln!(
        svg,
        r#"<text x="{x0}" y="{}" font-weight="bold">{}</text>"#,
        y0 + 14.0,
        escape(&panel.title)
    );
    let max = panel.bars.iter().filter_map(|(_, v)| *v).fold(0.0f64, f64::max);
    let bar_space = PANEL_WIDTH - LABEL_WIDTH - 70.0;
    for (j, (server, value)) in panel.bars.iter().enumerate() {
        let y = y0 + TITLE_HEIGHT + j as f64 * (BAR_HEIGHT + BAR_GAP);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            x0 + LABEL_WIDTH - 8.0,
            y + BAR_HEIGHT * 0.7,
            escape(server)
        );
        let Some(value) = value else {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" fill="#888">no result</text>"##,
                x0 + LABEL_WIDTH,
                y + BAR_HEIGHT * 0.7
            );
            continue;
        };
        let w = if max > 0.0 {
            (value / max * bar_space).max(1.0)
        } else {
            1.0
        };
        let colour = if server == baseline { "#d9480f" } else { "#5c7cfa" };
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{y}" width="{w:.1}" height="{BAR_HEIGHT}" fill="{colour}"/>"#,
            x0 + LABEL_WIDTH
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}">{:.*}</text>"#,
            x0 + LABEL_WIDTH + w + 5.0,
            y + BAR_HEIGHT * 0.7,
            panel.decimals,
            value
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bars_and_missing_values() {
        let panels = vec![Panel {
            title: "a < b".into(),
            bars: vec![("wshub".into(), Some(2.0)), ("peer".into(), None)],
            decimals: 1,
        }];
        let svg = render(&panels, "wshub");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt; b"));
        assert!(svg.contains("no result"));
        assert!(svg.contains(">2.0</text>"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
