//! Bar charts as inline SVG drawn on the server: no chart library, no script.

use maud::{html, Markup};

const WIDTH: u64 = 600;
const HEIGHT: u64 = 80;

/// One bar per value, scaled to the largest; `label` names the chart for screen
/// readers and each bar's title gives its value and `bucket_label(i)`.
pub fn bars(label: &str, values: &[u64], bucket_label: impl Fn(usize) -> String) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    // Fractional positions: the bars fill the whole width whatever their number.
    let step = WIDTH as f64 / values.len().max(1) as f64;
    let bar = format!("{:.2}", (step * 0.85).max(0.5));
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(label) preserveAspectRatio="none" {
            @for (i, v) in values.iter().enumerate() {
                @let h = v * HEIGHT / max;
                @if *v > 0 {
                    rect x=(format!("{:.2}", i as f64 * step)) y=(HEIGHT - h.max(1)) width=(bar) height=(h.max(1)) {
                        title { (bucket_label(i)) ": " (v) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_skip_zeroes() {
        let svg = bars("x", &[0, 5, 10], |i| format!("b{i}")).into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(r#"height="80""#), "{svg}");
        assert!(svg.contains(r#"height="40""#), "{svg}");
        assert!(svg.contains("<title>b2: 10</title>"), "{svg}");
        // Nothing at all draws an empty chart, not a division by zero.
        assert_eq!(
            bars("x", &[], |_| String::new())
                .into_string()
                .matches("<rect")
                .count(),
            0
        );
    }
}
