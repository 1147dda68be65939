//! The plots of `cargo xtask bench`, as plain SVG (no dependency): a
//! throughput bar chart and a latency-percentile plot.

use std::fmt::Write as _;

const WIDTH: f64 = 860.0;
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";
const COLOURS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

/// One bar: its label, its length, the text written after it.
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) note: String,
}

/// Horizontal bars in groups (a heading each), on one scale.
pub(crate) fn bars(title: &str, unit: &str, groups: &[(String, Vec<Bar>)]) -> String {
    let (left, right, row, top) = (250.0, 190.0, 22.0, 48.0);
    let plot = WIDTH - left - right;
    let max = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|b| b.value))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let (step, ticks) = nice_ticks(max);
    let scale_max = step * ticks as f64;
    let rows: usize = groups.iter().map(|(_, bars)| bars.len() + 1).sum();
    let height = top + rows as f64 * row + 40.0;
    let x = |v: f64| {
        left + if scale_max > 0.0 {
            v / scale_max * plot
        } else {
            0.0
        }
    };

    let mut svg = header(height, title);
    for i in 0..=ticks {
        let v = step * i as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\" {FONT}>{3}</text>",
            x(v),
            height - 34.0,
            height - 20.0,
            number(v)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>",
        left + plot / 2.0,
        height - 5.0,
        escape(unit)
    );
    let mut y = top;
    let mut colour = 0;
    for (heading, bars) in groups {
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{:.1}\" {FONT} font-weight=\"bold\">{}</text>",
            y + row * 0.7,
            escape(heading)
        );
        y += row;
        for bar in bars {
            let fill = COLOURS.get(colour % COLOURS.len()).unwrap_or(&"#888");
            colour += 1;
            let length = if bar.value.is_finite() {
                x(bar.value) - left
            } else {
                0.0
            };
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>\
                 <rect x=\"{left}\" y=\"{:.1}\" width=\"{length:.1}\" height=\"{:.1}\" fill=\"{fill}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
                left - 8.0,
                y + row * 0.68,
                escape(&bar.label),
                y + 3.0,
                row - 6.0,
                left + length + 6.0,
                y + row * 0.68,
                escape(&bar.note)
            );
            y += row;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// One line of the latency plot: a name and its latencies (ns), ascending.
pub(crate) struct Series<'a> {
    pub(crate) name: String,
    pub(crate) sorted_ns: &'a [u64],
}

/// The highest percentile plotted: 99.99%.
const NINES: f64 = 4.0;

/// Latency by percentile, the percentile on a "nines" scale (50%, 90%,
/// 99%, 99.9%, 99.99% evenly spaced from 90% on), latency on a log scale
/// (the median and the tail in one picture).
pub(crate) fn percentiles(title: &str, series: &[Series<'_>]) -> String {
    let (left, right, top, bottom) = (70.0, 230.0, 48.0, 50.0);
    let height = 440.0;
    let (plot_w, plot_h) = (WIDTH - left - right, height - top - bottom);
    // In µs.
    let at = |sorted: &[u64], nines: f64| {
        crate::bench_load::percentile(sorted, (1.0 - 10f64.powf(-nines)) * 100.0) / 1e3
    };
    let finite = |values: Vec<f64>| -> Vec<f64> {
        values
            .into_iter()
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect()
    };
    let highs = finite(series.iter().map(|s| at(s.sorted_ns, NINES)).collect());
    let lows = finite(series.iter().map(|s| at(s.sorted_ns, 0.0)).collect());
    let low = lows.iter().copied().fold(f64::INFINITY, f64::min);
    let high = highs.iter().copied().fold(0.0, f64::max);
    let (decade_low, decade_high) = if low.is_finite() && high > 0.0 {
        (
            low.log10().floor(),
            high.log10().ceil().max(low.log10().floor() + 1.0),
        )
    } else {
        (1.0, 4.0)
    };
    let x = |nines: f64| left + nines / NINES * plot_w;
    let y = |us: f64| {
        let position =
            (us.max(f64::MIN_POSITIVE).log10() - decade_low) / (decade_high - decade_low);
        top + plot_h - position.clamp(0.0, 1.0) * plot_h
    };

    let mut svg = header(height, title);
    let mut decade = decade_low;
    while decade <= decade_high {
        for (mantissa, labelled) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = mantissa * 10f64.powf(decade);
            if v.log10() > decade_high + 1e-9 {
                break;
            }
            let stroke = if labelled { "#ccc" } else { "#eee" };
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"{stroke}\"/>\
                 <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\" {FONT}>{4}</text>",
                y(v),
                left + plot_w,
                left - 6.0,
                y(v) + 4.0,
                latency_label(v)
            );
        }
        decade += 1.0;
    }
    for (nines, label) in [
        (0.0, "0%"),
        (2f64.log10(), "50%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
    ] {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\" {FONT}>{label}</text>",
            x(nines),
            top + plot_h,
            top + plot_h + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>percentile</text>\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" {FONT} transform=\"rotate(-90 16 {:.1})\">latency (log scale)</text>",
        left + plot_w / 2.0,
        height - 12.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS.get(index % COLOURS.len()).unwrap_or(&"#888");
        let points: Vec<String> = (0..=400)
            .map(|i| f64::from(i) / 100.0)
            .filter_map(|nines| {
                let us = at(line.sorted_ns, nines);
                us.is_finite()
                    .then(|| format!("{:.1},{:.1}", x(nines), y(us)))
            })
            .collect();
        let legend_y = top + 10.0 + index as f64 * 20.0;
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\" points=\"{}\"/>\
             <line x1=\"{:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            points.join(" "),
            WIDTH - right + 16.0,
            WIDTH - right + 40.0,
            WIDTH - right + 46.0,
            legend_y + 4.0,
            escape(&line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn header(height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-family=\"sans-serif\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    )
}

/// `20 µs`, `1 ms`, `0.5 s`: a latency tick given in µs.
fn latency_label(us: f64) -> String {
    if us < 1000.0 {
        format!("{} µs", trim(us))
    } else if us < 1e6 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} s", trim(us / 1e6))
    }
}

/// A tick step of 1, 2 or 5 × 10ⁿ and how many ticks reach `max`.
fn nice_ticks(max: f64) -> (f64, usize) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 1);
    }
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * magnitude);
    (step, (max / step).ceil().max(1.0) as usize)
}

/// A tick label: `20k` for thousands, else as short as it reads.
fn number(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(95_000.0), (20_000.0, 5));
        assert_eq!(nice_ticks(1.3), (0.5, 3));
        assert_eq!(nice_ticks(0.0), (1.0, 1));
        assert_eq!(number(40_000.0), "40k");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(latency_label(50.0), "50 µs");
        assert_eq!(latency_label(2000.0), "2 ms");
    }

    #[test]
    fn plots_are_svg() {
        let chart = bars(
            "t",
            "req/s",
            &[(
                "HTTP/1.1".to_string(),
                vec![Bar {
                    label: "nginx `proxy_pass` <&>".to_string(),
                    value: 10.0,
                    note: "10".to_string(),
                }],
            )],
        );
        assert!(chart.starts_with("<svg") && chart.ends_with("</svg>\n"));
        assert!(chart.contains("&lt;&amp;&gt;"));
        let sorted: Vec<u64> = (1..=10_000).map(|v| v * 1000).collect();
        let plot = percentiles(
            "l",
            &[Series {
                name: "direct".to_string(),
                sorted_ns: &sorted,
            }],
        );
        assert!(plot.contains("<polyline") && plot.ends_with("</svg>\n"));
    }
}
