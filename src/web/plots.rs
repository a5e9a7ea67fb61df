//! Server-rendered SVG plots for the researchers' report page.
//!
//! Each plot is a plain function of the report figures ([`StudyReport`], [`RaterReport`]) that
//! returns a standalone `<svg>` string: the page shows it without any JavaScript, the output is
//! deterministic, and tests check pixel positions against hand computations. Only numbers we
//! format ourselves and escaped text go into the markup; rater names are user input and every
//! tooltip and label passes through `escape`. The plots share one frame (size, margins, 0-based
//! scales, gridlines, legend) so they look alike, and each has its own `<title>` id so all of
//! them can sit on one page. With nothing to plot, a function still returns a small SVG saying
//! "No data yet", so the caller never special-cases an empty study.
//!
//! Data points are the only `<circle>` elements (legend swatches are rounded `<rect>`s), so
//! counting circles counts points.

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use crate::domain::ProverRole;
use crate::metrics::MeanInterval;
use crate::ml::game_seeds::RoundAcrossSeeds;
use crate::reports::{ArmReport, CalibrationBin, Rate, RaterReport, StudyReport};

/// Colour of the helpful role (as on the rest of the page).
const HELPFUL_COLOUR: &str = "#1b6ac9";
/// Colour of the sneaky role.
const SNEAKY_COLOUR: &str = "#c9491b";
/// Gridlines.
const GRID_COLOUR: &str = "#ddd";
/// Neutral ink: raters above chance, generic legend entries.
const INK: &str = "#333";
/// Chance-level raters and the chance line.
const CHANCE_GREY: &str = "#999";
/// Dash pattern of dashed lines.
const DASH: &str = "5 4";
/// Accuracy gridlines.
const ACCURACY_TICKS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// Gridline ticks of a share axis: ("0.00", "0.25", …, "1.00").
fn accuracy_ticks() -> Vec<(f64, String)> {
    ACCURACY_TICKS
        .iter()
        .map(|t| (*t, format!("{t:.2}")))
        .collect()
}

fn role_colour(role: ProverRole) -> &'static str {
    match role {
        ProverRole::Helpful => HELPFUL_COLOUR,
        ProverRole::Sneaky => SNEAKY_COLOUR,
    }
}

/// Escapes the five XML specials, so text is safe in element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A legend swatch.
enum Glyph {
    /// A line sample, solid or dashed.
    Line { colour: &'static str, dashed: bool },
    /// A point sample (a rounded square, so circles stay data points only).
    Dot {
        fill: &'static str,
        stroke: &'static str,
    },
    /// The cross marking excluded raters.
    Cross,
}

/// One legend row: swatch, label, label colour.
struct Entry(Glyph, &'static str, &'static str);

/// `d` of a cross centred on (`x`, `y`) with arms reaching `s` in each direction.
fn cross_path(x: f64, y: f64, s: f64) -> String {
    format!(
        "M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}",
        x - s,
        y - s,
        x + s,
        y + s,
        x - s,
        y + s,
        x + s,
        y - s
    )
}

/// A plotted point with its tooltip (raw text; escaped when drawn).
struct Point {
    x: f64,
    y: f64,
    tooltip: String,
}

/// Pixel layout of one plot; both axes run from 0 to a maximum.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    /// The accuracy-by-round plot's original layout.
    const NARROW: Frame = Frame {
        width: 480.0,
        height: 260.0,
        left: 50.0,
        right: 110.0,
        top: 20.0,
        bottom: 40.0,
    };
    /// The same plot area with room for a longer legend.
    const WIDE: Frame = Frame {
        width: 520.0,
        right: 150.0,
        ..Frame::NARROW
    };

    fn plot_w(&self) -> f64 {
        self.width - self.left - self.right
    }

    fn plot_h(&self) -> f64 {
        self.height - self.top - self.bottom
    }

    /// Pixel row of `value` on a 0..=`max` vertical axis.
    fn y(&self, value: f64, max: f64) -> f64 {
        self.top + (1.0 - value / max) * self.plot_h()
    }

    /// Pixel column of `value` on a 0..=`max` horizontal axis.
    fn x(&self, value: f64, max: f64) -> f64 {
        self.left + value / max * self.plot_w()
    }

    /// The opening tag and the accessible title.
    fn open(&self, id: &str, title: &str) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" viewBox=\"0 0 {:.0} {:.0}\" role=\"img\" aria-labelledby=\"{id}\" class=\"plot\"><title id=\"{id}\">{}</title>",
            self.width,
            self.height,
            self.width,
            self.height,
            escape(title)
        )
    }

    /// A whole SVG saying there is nothing to plot yet.
    fn no_data(&self, id: &str, title: &str) -> String {
        let mut svg = self.open(id, title);
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" fill=\"#666\" text-anchor=\"middle\">No data yet</text></svg>",
            self.left + self.plot_w() / 2.0,
            self.top + self.plot_h() / 2.0
        ));
        svg
    }

    /// Horizontal gridlines at `ticks` (value, label) of a 0..=`max` vertical axis.
    fn y_grid(&self, svg: &mut String, max: f64, ticks: &[(f64, String)]) {
        for (value, label) in ticks {
            let y = self.y(*value, max);
            svg.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{GRID_COLOUR}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
                self.left,
                self.left + self.plot_w(),
                self.left - 6.0,
                y + 4.0,
                escape(label)
            ));
        }
    }

    /// Vertical gridlines at `ticks` (value, label) of a 0..=`max` horizontal axis.
    fn x_grid(&self, svg: &mut String, max: f64, ticks: &[(f64, String)]) {
        for (value, label) in ticks {
            let x = self.x(*value, max);
            svg.push_str(&format!(
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{GRID_COLOUR}\"/>",
                self.top,
                self.top + self.plot_h()
            ));
            self.x_label(svg, x, label);
        }
    }

    /// A label under the plot area at column `x`.
    fn x_label(&self, svg: &mut String, x: f64, label: &str) {
        svg.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            self.height - self.bottom + 18.0,
            escape(label)
        ));
    }

    /// The legend, one row per entry, right of the plot area.
    fn legend(&self, svg: &mut String, entries: &[Entry]) {
        let x0 = self.left + self.plot_w() + 14.0;
        for (index, Entry(glyph, label, colour)) in entries.iter().enumerate() {
            let y = self.top + 16.0 + 18.0 * index as f64;
            let mid = y - 4.0;
            match glyph {
                Glyph::Line { colour: stroke, dashed } => svg.push_str(&format!(
                    "<line x1=\"{x0:.1}\" x2=\"{:.1}\" y1=\"{mid:.1}\" y2=\"{mid:.1}\" stroke=\"{stroke}\" stroke-width=\"2\"{}/>",
                    x0 + 16.0,
                    dash_attribute(*dashed)
                )),
                Glyph::Dot { fill, stroke } => svg.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"/>",
                    x0 + 4.0,
                    mid - 4.0
                )),
                Glyph::Cross => svg.push_str(&format!(
                    "<path d=\"{}\" stroke=\"{INK}\" stroke-width=\"1.5\"/>",
                    cross_path(x0 + 8.0, mid, 4.0)
                )),
            }
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"12\" fill=\"{colour}\">{}</text>",
                x0 + 22.0,
                escape(label)
            ));
        }
    }
}

/// ` stroke-dasharray="…"` for dashed lines, nothing for solid ones.
fn dash_attribute(dashed: bool) -> String {
    if dashed {
        format!(" stroke-dasharray=\"{DASH}\"")
    } else {
        String::new()
    }
}

/// A line through `points` in `colour`.
fn polyline<'a>(
    svg: &mut String,
    points: impl IntoIterator<Item = &'a Point>,
    colour: &str,
    dashed: bool,
) {
    let path: Vec<String> = points
        .into_iter()
        .map(|p| format!("{:.1},{:.1}", p.x, p.y))
        .collect();
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{} points=\"{}\"/>",
        dash_attribute(dashed),
        path.join(" ")
    ));
}

/// A data point with its tooltip.
fn circle(svg: &mut String, point: &Point, radius: f64, fill: &str, stroke: &str) {
    svg.push_str(&format!(
        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{radius:.1}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"><title>{}</title></circle>",
        point.x,
        point.y,
        escape(&point.tooltip)
    ));
}

/// The prover rounds present, evenly spaced along the horizontal axis.
struct Rounds(Vec<i64>);

impl Rounds {
    fn new(rounds: impl IntoIterator<Item = i64>) -> Rounds {
        let mut all: Vec<i64> = rounds.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        Rounds(all)
    }

    /// Column of `round`: the first round at the left edge, the last at the right; a single
    /// round in the middle.
    fn x(&self, frame: &Frame, round: i64) -> f64 {
        let i = self.0.iter().position(|r| *r == round).unwrap_or(0) as f64;
        frame.left
            + if self.0.len() > 1 {
                i * frame.plot_w() / (self.0.len() - 1) as f64
            } else {
                frame.plot_w() / 2.0
            }
    }

    /// "round N" under each round's column.
    fn labels(&self, frame: &Frame, svg: &mut String) {
        for round in &self.0 {
            frame.x_label(svg, self.x(frame, *round), &format!("round {round}"));
        }
    }
}

/// The legend rows naming the two roles in their colours.
fn role_entries() -> Vec<Entry> {
    ProverRole::ALL
        .iter()
        .map(|role| {
            let colour = role_colour(*role);
            Entry(
                Glyph::Line {
                    colour,
                    dashed: false,
                },
                role.as_str(),
                colour,
            )
        })
        .collect()
}

/// Top of a seconds axis and its gridline step, in whole seconds: `largest` rounded up to a
/// multiple of 5 s (at least 5 s); the step is 1 s, 2 s or a multiple of 5 s giving 4 to 6
/// gridlines, one that ends exactly at the top if there is one (35 s: 0, 10, 20, 30 s).
fn seconds_axis(largest: f64) -> (u64, u64) {
    let fives = if largest.is_finite() && largest > 0.0 {
        (largest / 5.0).ceil().clamp(1.0, 1e6) as u64
    } else {
        1
    };
    let max = fives * 5;
    // max / s ≤ 5 from s = max / 6 + 1 on; max / s ≥ 3 up to s = max / 3.
    let steps = || (max / 6 + 1..=max / 3).filter(|s| *s <= 2 || s % 5 == 0);
    let step = steps()
        .find(|s| max % s == 0)
        .or_else(|| steps().next())
        .unwrap_or(fives);
    (max, step)
}

/// Gridline ticks of a seconds axis: ("0 s", "5 s", …).
fn seconds_ticks(max: u64, step: u64) -> Vec<(f64, String)> {
    (0..=max / step)
        .map(|i| ((i * step) as f64, format!("{} s", i * step)))
        .collect()
}

/// Human accuracy by prover round, one line per role, with 95 % intervals as bars; the
/// checkpoints of one round are pooled (their right and answered judgements summed). The
/// paper's headline figure, server-rendered so the report needs no JavaScript. "No data yet"
/// when no group has an answered judgement.
pub fn accuracy_by_round_svg(report: &StudyReport) -> String {
    const ID: &str = "plot-accuracy-title";
    const TITLE: &str = "Human accuracy by prover round and role, with 95% intervals";
    let frame = Frame::NARROW;
    let mut pooled: BTreeMap<(ProverRole, i64), (u64, u64)> = BTreeMap::new();
    for g in &report.groups {
        if let Some(rate) = g.accuracy {
            let entry = pooled.entry((g.role, g.round)).or_default();
            entry.0 += rate.successes;
            entry.1 += rate.trials;
        }
    }
    let rates: BTreeMap<(ProverRole, i64), Rate> = pooled
        .into_iter()
        .filter_map(|(key, (k, n))| Rate::of(k, n).map(|rate| (key, rate)))
        .collect();
    if rates.is_empty() {
        return frame.no_data(ID, TITLE);
    }
    let rounds = Rounds::new(rates.keys().map(|(_, round)| *round));
    let y = |value: f64| frame.y(value, 1.0);
    let mut svg = frame.open(ID, TITLE);
    let ticks = accuracy_ticks();
    frame.y_grid(&mut svg, 1.0, &ticks);
    rounds.labels(&frame, &mut svg);
    for role in ProverRole::ALL {
        let colour = role_colour(*role);
        let series: Vec<(Point, Rate)> = rates
            .iter()
            .filter(|((r, _), _)| r == role)
            .map(|((_, round), rate)| {
                let point = Point {
                    x: rounds.x(&frame, *round),
                    y: y(rate.value),
                    tooltip: format!(
                        "{role}, round {round}: {:.3} [{:.3}, {:.3}], n={}",
                        rate.value, rate.low, rate.high, rate.trials
                    ),
                };
                (point, *rate)
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        polyline(&mut svg, series.iter().map(|(p, _)| p), colour, false);
        for (point, rate) in &series {
            svg.push_str(&format!(
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>",
                y(rate.low),
                y(rate.high),
                x = point.x
            ));
            circle(&mut svg, point, 4.0, colour, colour);
        }
    }
    frame.legend(&mut svg, &role_entries());
    svg.push_str("</svg>");
    svg
}

/// Sums for one role × round of the time plot: time-weighted totals and counts.
#[derive(Default)]
struct TimePool {
    right_ms: f64,
    right: u64,
    answered_ms: f64,
    answered: u64,
}

/// The paper's "time to judge correctly" by prover round, one line per role: the mean server
/// time of right judgements in seconds (solid), with the mean time of all answered judgements
/// (dashed) for comparison. The checkpoints of one round are pooled, each weighted by its
/// number of right (respectively answered) judgements, so the pooled value is the mean over the
/// round's judgements. The y axis starts at 0 and ends at a round multiple of 5 s. "No data
/// yet" when no group has an answered judgement.
pub fn time_by_round_svg(report: &StudyReport) -> String {
    const ID: &str = "plot-time-title";
    const TITLE: &str =
        "Mean time of right judgements by prover round and role, with all answered (dashed)";
    let frame = Frame::WIDE;
    let mut pooled: BTreeMap<(ProverRole, i64), TimePool> = BTreeMap::new();
    for g in &report.groups {
        let Some(rate) = g.accuracy else { continue };
        let pool = pooled.entry((g.role, g.round)).or_default();
        if let Some(ms) = g.mean_ms_when_right
            && rate.successes > 0
        {
            pool.right_ms += ms * rate.successes as f64;
            pool.right += rate.successes;
        }
        if let Some(ms) = g.mean_ms
            && rate.trials > 0
        {
            pool.answered_ms += ms * rate.trials as f64;
            pool.answered += rate.trials;
        }
    }
    pooled.retain(|_, p| p.answered > 0);
    if pooled.is_empty() {
        return frame.no_data(ID, TITLE);
    }
    let seconds = |ms: f64, n: u64| ms / n as f64 / 1000.0;
    let largest = pooled
        .values()
        .flat_map(|p| {
            [
                (p.right > 0).then(|| seconds(p.right_ms, p.right)),
                Some(seconds(p.answered_ms, p.answered)),
            ]
        })
        .flatten()
        .fold(0.0, f64::max);
    let (max, step) = seconds_axis(largest);
    let max_s = max as f64;
    let rounds = Rounds::new(pooled.keys().map(|(_, round)| *round));
    let mut svg = frame.open(ID, TITLE);
    frame.y_grid(&mut svg, max_s, &seconds_ticks(max, step));
    rounds.labels(&frame, &mut svg);
    for role in ProverRole::ALL {
        let colour = role_colour(*role);
        let mine: Vec<(i64, &TimePool)> = pooled
            .iter()
            .filter(|((r, _), _)| r == role)
            .map(|((_, round), p)| (*round, p))
            .collect();
        let answered: Vec<Point> = mine
            .iter()
            .map(|(round, p)| {
                let s = seconds(p.answered_ms, p.answered);
                Point {
                    x: rounds.x(&frame, *round),
                    y: frame.y(s, max_s),
                    tooltip: format!(
                        "{role}, round {round}: {s:.1} s all answered (n={})",
                        p.answered
                    ),
                }
            })
            .collect();
        let right: Vec<Point> = mine
            .iter()
            .filter(|(_, p)| p.right > 0)
            .map(|(round, p)| {
                let s = seconds(p.right_ms, p.right);
                Point {
                    x: rounds.x(&frame, *round),
                    y: frame.y(s, max_s),
                    tooltip: format!("{role}, round {round}: {s:.1} s when right (n={})", p.right),
                }
            })
            .collect();
        if !answered.is_empty() {
            polyline(&mut svg, &answered, colour, true);
        }
        if !right.is_empty() {
            polyline(&mut svg, &right, colour, false);
        }
        for point in &answered {
            circle(&mut svg, point, 3.0, "#fff", colour);
        }
        for point in &right {
            circle(&mut svg, point, 4.0, colour, colour);
        }
    }
    let mut entries = role_entries();
    entries.push(Entry(
        Glyph::Line {
            colour: INK,
            dashed: false,
        },
        "when right",
        INK,
    ));
    entries.push(Entry(
        Glyph::Line {
            colour: INK,
            dashed: true,
        },
        "all answered",
        INK,
    ));
    frame.legend(&mut svg, &entries);
    svg.push_str("</svg>");
    svg
}

/// Speed against accuracy per rater: one point per rater with an answered judgement at
/// (median server time in seconds, accuracy), with a dashed line at chance (0.5). Chance-level
/// raters are hollow and grey, raters in `excluded` are crossed, so the exclusion toggle's
/// effect can be seen; each point's tooltip names the rater (from `names`, escaped: names are
/// user input; the id when unnamed). Raters keep their order in `raters`. "No data yet" when
/// no rater has an answered judgement.
pub fn rater_scatter_svg(
    raters: &[RaterReport],
    excluded: &HashSet<Uuid>,
    names: &BTreeMap<Uuid, String>,
) -> String {
    const ID: &str = "plot-raters-title";
    const TITLE: &str = "Accuracy against median time per rater, with chance at 0.5";
    let frame = Frame::WIDE;
    let plotted: Vec<(&RaterReport, Rate, f64)> = raters
        .iter()
        .filter_map(|r| Some((r, r.accuracy?, r.median_ms? / 1000.0)))
        .collect();
    if plotted.is_empty() {
        return frame.no_data(ID, TITLE);
    }
    let largest = plotted.iter().map(|(_, _, s)| *s).fold(0.0, f64::max);
    let (max, step) = seconds_axis(largest);
    let max_s = max as f64;
    let mut svg = frame.open(ID, TITLE);
    let ticks = accuracy_ticks();
    frame.y_grid(&mut svg, 1.0, &ticks);
    frame.x_grid(&mut svg, max_s, &seconds_ticks(max, step));
    let chance = frame.y(0.5, 1.0);
    svg.push_str(&format!(
        "<line class=\"chance\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{chance:.1}\" y2=\"{chance:.1}\" stroke=\"{CHANCE_GREY}\" stroke-width=\"1.5\" stroke-dasharray=\"{DASH}\"/>",
        frame.left,
        frame.left + frame.plot_w()
    ));
    let middle = frame.top + frame.plot_h() / 2.0;
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">median time per judgement</text><text x=\"12.0\" y=\"{middle:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12.0 {middle:.1})\">accuracy</text>",
        frame.left + frame.plot_w() / 2.0,
        frame.height - 4.0
    ));
    for (rater, rate, median_s) in &plotted {
        let name = names
            .get(&rater.rater_id)
            .cloned()
            .unwrap_or_else(|| format!("rater {}", rater.rater_id));
        let is_excluded = excluded.contains(&rater.rater_id);
        let point = Point {
            x: frame.x(*median_s, max_s),
            y: frame.y(rate.value, 1.0),
            tooltip: format!(
                "{name}: accuracy {:.3} [{:.3}, {:.3}] (n={}), median {median_s:.1} s{}{}",
                rate.value,
                rate.low,
                rate.high,
                rate.trials,
                if rater.chance_level {
                    ", chance-level"
                } else {
                    ""
                },
                if is_excluded { ", excluded" } else { "" }
            ),
        };
        if rater.chance_level {
            circle(&mut svg, &point, 4.0, "#fff", CHANCE_GREY);
        } else {
            circle(&mut svg, &point, 4.0, INK, INK);
        }
        if is_excluded {
            svg.push_str(&format!(
                "<path class=\"excluded\" d=\"{}\" stroke=\"{INK}\" stroke-width=\"1.5\" pointer-events=\"none\"/>",
                cross_path(point.x, point.y, 6.0)
            ));
        }
    }
    frame.legend(
        &mut svg,
        &[
            Entry(
                Glyph::Dot {
                    fill: INK,
                    stroke: INK,
                },
                "above chance",
                INK,
            ),
            Entry(
                Glyph::Dot {
                    fill: "#fff",
                    stroke: CHANCE_GREY,
                },
                "chance-level",
                INK,
            ),
            Entry(Glyph::Cross, "excluded", INK),
            Entry(
                Glyph::Line {
                    colour: CHANCE_GREY,
                    dashed: true,
                },
                "chance (0.5)",
                INK,
            ),
        ],
    );
    svg.push_str("</svg>");
    svg
}

/// Colours of the speed–accuracy plot's checkpoint lines, in turn.
const CHECKPOINT_COLOURS: [&str; 6] = [
    HELPFUL_COLOUR,
    SNEAKY_COLOUR,
    "#2a8a3e",
    "#7a3fb0",
    "#8a6d1b",
    "#1b8a8a",
];

/// The speed–accuracy curves of a study comparing time limits: per prover checkpoint, human
/// accuracy (with its 95 % interval) against the time limit, each line labelled at its end.
pub fn arms_svg(arms: &[ArmReport]) -> String {
    const ID: &str = "plot-arms-title";
    const TITLE: &str = "Human accuracy by time limit per prover checkpoint, with 95% intervals";
    let frame = Frame::WIDE;
    let mut curves: BTreeMap<&str, Vec<(i64, Rate)>> = BTreeMap::new();
    for arm in arms {
        if let Some(rate) = arm.accuracy {
            curves
                .entry(arm.checkpoint.as_str())
                .or_default()
                .push((arm.time_limit_ms, rate));
        }
    }
    if curves.is_empty() {
        return frame.no_data(ID, TITLE);
    }
    let largest = arms
        .iter()
        .map(|a| a.time_limit_ms as f64 / 1000.0)
        .fold(0.0, f64::max);
    let (max, step) = seconds_axis(largest);
    let max_s = max as f64;
    let mut svg = frame.open(ID, TITLE);
    frame.y_grid(&mut svg, 1.0, &accuracy_ticks());
    frame.x_grid(&mut svg, max_s, &seconds_ticks(max, step));
    for (index, (checkpoint, points)) in curves.iter().enumerate() {
        let colour = CHECKPOINT_COLOURS[index % CHECKPOINT_COLOURS.len()];
        let series: Vec<(Point, Rate)> = points
            .iter()
            .map(|(limit, rate)| {
                let seconds = *limit as f64 / 1000.0;
                (
                    Point {
                        x: frame.x(seconds, max_s),
                        y: frame.y(rate.value, 1.0),
                        tooltip: format!(
                            "{checkpoint}, {seconds} s: {:.3} [{:.3}, {:.3}], n={}",
                            rate.value, rate.low, rate.high, rate.trials
                        ),
                    },
                    *rate,
                )
            })
            .collect();
        polyline(&mut svg, series.iter().map(|(p, _)| p), colour, false);
        for (point, rate) in &series {
            svg.push_str(&format!(
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>",
                frame.y(rate.low, 1.0),
                frame.y(rate.high, 1.0),
                x = point.x
            ));
            circle(&mut svg, point, 4.0, colour, colour);
        }
        if let Some((last, _)) = series.last() {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{colour}\">{}</text>",
                last.x + 8.0,
                last.y + 4.0,
                escape(checkpoint)
            ));
        }
    }
    let middle = frame.top + frame.plot_h() / 2.0;
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">time limit</text><text x=\"12.0\" y=\"{middle:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12.0 {middle:.1})\">accuracy</text>",
        frame.left + frame.plot_w() / 2.0,
        frame.height - 4.0
    ));
    svg.push_str("</svg>");
    svg
}

/// The calibration plot: per bin of stated probability, the share of solutions that were
/// correct (with its interval) against the bin's mean stated probability; perfectly calibrated
/// raters lie on the diagonal.
pub fn calibration_svg(bins: &[CalibrationBin]) -> String {
    const ID: &str = "plot-calibration-title";
    const TITLE: &str = "Stated probability against the share of solutions that were correct";
    let frame = Frame::WIDE;
    if bins.is_empty() {
        return frame.no_data(ID, TITLE);
    }
    let mut svg = frame.open(ID, TITLE);
    let ticks = accuracy_ticks();
    frame.y_grid(&mut svg, 1.0, &ticks);
    frame.x_grid(&mut svg, 1.0, &ticks);
    svg.push_str(&format!(
        "<line class=\"diagonal\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{CHANCE_GREY}\" stroke-width=\"1.5\" stroke-dasharray=\"{DASH}\"/>",
        frame.x(0.0, 1.0),
        frame.y(0.0, 1.0),
        frame.x(1.0, 1.0),
        frame.y(1.0, 1.0)
    ));
    let middle = frame.top + frame.plot_h() / 2.0;
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">stated probability correct</text><text x=\"12.0\" y=\"{middle:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12.0 {middle:.1})\">share correct</text>",
        frame.left + frame.plot_w() / 2.0,
        frame.height - 4.0
    ));
    for bin in bins {
        let x = frame.x(bin.mean_stated, 1.0);
        svg.push_str(&format!(
            "<line class=\"interval\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{INK}\" stroke-width=\"1\"/>",
            frame.y(bin.observed.low, 1.0),
            frame.y(bin.observed.high, 1.0)
        ));
        let point = Point {
            x,
            y: frame.y(bin.observed.value, 1.0),
            tooltip: format!(
                "stated {}–{} % (mean {:.3}): {:.3} correct [{:.3}, {:.3}] (n={})",
                bin.from_percent,
                bin.to_percent,
                bin.mean_stated,
                bin.observed.value,
                bin.observed.low,
                bin.observed.high,
                bin.answers
            ),
        };
        circle(&mut svg, &point, 4.0, INK, INK);
    }
    frame.legend(
        &mut svg,
        &[
            Entry(
                Glyph::Dot {
                    fill: INK,
                    stroke: INK,
                },
                "answers in a bin",
                INK,
            ),
            Entry(
                Glyph::Line {
                    colour: CHANCE_GREY,
                    dashed: true,
                },
                "perfect calibration",
                INK,
            ),
        ],
    );
    svg.push_str("</svg>");
    svg
}

/// One line of a round-curve plot: its legend label, colour, dash, and (round, value) points.
pub struct RoundCurve {
    /// Legend text.
    pub label: &'static str,
    /// Stroke colour.
    pub colour: &'static str,
    /// Dashed line (a second family of figures on the same plot).
    pub dashed: bool,
    /// Values by round (in [0, 1] for shares); rounds without a value are left out.
    pub points: Vec<(i64, f64)>,
    /// Intervals drawn as bars: (round, low, high); empty for a single run.
    pub intervals: Vec<(i64, f64, f64)>,
}

/// The prover's curves of a training run by round: helpful accuracy and sneaky success.
pub fn prover_curves(rounds: &[(i64, crate::game::RoundMetrics)]) -> Vec<RoundCurve> {
    vec![
        curve(rounds, "helpful accuracy", HELPFUL_COLOUR, false, |m| {
            m.prover_accuracy
        }),
        curve(rounds, "sneaky success", SNEAKY_COLOUR, false, |m| {
            m.sneaky_success
        }),
    ]
}

/// The verifier's curves of a training run by round: accuracy and AUROC against correctness,
/// and balanced best-of-n accuracy with the round's verifier.
pub fn verifier_curves(rounds: &[(i64, crate::game::RoundMetrics)]) -> Vec<RoundCurve> {
    vec![
        curve(rounds, "verifier accuracy", INK, false, |m| {
            m.verifier_accuracy
        }),
        curve(rounds, "verifier AUROC", INK, true, |m| m.verifier_auroc),
        curve(rounds, "best-of-n accuracy", HELPFUL_COLOUR, true, |m| {
            m.best_of_n_accuracy
        }),
        curve(rounds, "fool rate", SNEAKY_COLOUR, false, |m| m.fool_rate),
    ]
}

/// The attack curves of a training run (the paper's robustness plot): per round, the
/// sneaky-only attack steps until the round's frozen verifier was fooled, and the cap, where a
/// round that was not fooled within the cap sits. `attacks` holds (round, steps to the target,
/// cap) for the rounds that were attacked.
pub fn attack_steps_svg(id: &str, title: &str, attacks: &[(i64, Option<usize>, usize)]) -> String {
    let max = attacks
        .iter()
        .map(|(_, _, cap)| *cap)
        .max()
        .unwrap_or(1)
        .max(1);
    let curves = [
        RoundCurve {
            label: "attack steps until fooled",
            colour: SNEAKY_COLOUR,
            dashed: false,
            points: attacks
                .iter()
                .map(|(round, steps, cap)| (*round, steps.unwrap_or(*cap) as f64))
                .collect(),
            intervals: Vec::new(),
        },
        RoundCurve {
            label: "cap (at it: not fooled)",
            colour: CHANCE_GREY,
            dashed: true,
            points: attacks
                .iter()
                .map(|(round, _, cap)| (*round, *cap as f64))
                .collect(),
            intervals: Vec::new(),
        },
    ];
    steps_lines_svg(id, title, &curves, max)
}

/// Lines of step counts on a 0..=`max` axis with whole-number ticks.
fn steps_lines_svg(id: &str, title: &str, curves: &[RoundCurve], max: usize) -> String {
    let step = max.div_ceil(5).max(1);
    let ticks: Vec<(f64, String)> = (0..=max)
        .step_by(step)
        .map(|t| (t as f64, t.to_string()))
        .collect();
    round_lines_svg(id, title, curves, max as f64, &ticks, 0)
}

/// A figure across seeds as a curve: the means, with their intervals as bars (clamped to
/// [0, 1], where a t-interval on a share of 3 seeds can reach past).
fn curve_across_seeds(
    rounds: &[RoundAcrossSeeds],
    label: &'static str,
    colour: &'static str,
    dashed: bool,
    value: fn(&RoundAcrossSeeds) -> Option<MeanInterval>,
) -> RoundCurve {
    let figures: Vec<(i64, MeanInterval)> = rounds
        .iter()
        .filter_map(|r| value(r).map(|f| (i64::from(r.round), f)))
        .collect();
    RoundCurve {
        label,
        colour,
        dashed,
        points: figures
            .iter()
            .map(|(round, f)| (*round, f.mean.clamp(0.0, 1.0)))
            .collect(),
        intervals: figures
            .iter()
            .map(|(round, f)| (*round, f.low.clamp(0.0, 1.0), f.high.clamp(0.0, 1.0)))
            .collect(),
    }
}

/// [`prover_curves`] of a run repeated over seeds: means with 95 % intervals.
pub fn prover_curves_across_seeds(rounds: &[RoundAcrossSeeds]) -> Vec<RoundCurve> {
    vec![
        curve_across_seeds(rounds, "helpful accuracy", HELPFUL_COLOUR, false, |r| {
            r.helpful_accuracy
        }),
        curve_across_seeds(rounds, "sneaky success", SNEAKY_COLOUR, false, |r| {
            r.sneaky_success
        }),
    ]
}

/// [`verifier_curves`] of a run repeated over seeds (accuracy at 0 is not kept across seeds):
/// means with 95 % intervals.
pub fn verifier_curves_across_seeds(rounds: &[RoundAcrossSeeds]) -> Vec<RoundCurve> {
    vec![
        curve_across_seeds(rounds, "verifier AUROC", INK, true, |r| r.verifier_auroc),
        curve_across_seeds(rounds, "best-of-n accuracy", HELPFUL_COLOUR, true, |r| {
            r.best_of_n_accuracy
        }),
        curve_across_seeds(rounds, "fool rate", SNEAKY_COLOUR, false, |r| r.fool_rate),
    ]
}

/// [`attack_steps_svg`] of a run repeated over seeds: per round the mean attack steps (an
/// attack not fooled counted at its cap) with its 95 % interval, and the cap `cap`.
pub fn attack_steps_across_seeds_svg(
    id: &str,
    title: &str,
    rounds: &[RoundAcrossSeeds],
    cap: usize,
) -> String {
    let max = cap.max(1);
    let figures: Vec<(i64, MeanInterval)> = rounds
        .iter()
        .filter_map(|r| r.attack_steps.map(|f| (i64::from(r.round), f)))
        .collect();
    let within = |v: f64| v.clamp(0.0, max as f64);
    let curves = [
        RoundCurve {
            label: "mean attack steps until fooled",
            colour: SNEAKY_COLOUR,
            dashed: false,
            points: figures.iter().map(|(r, f)| (*r, within(f.mean))).collect(),
            intervals: figures
                .iter()
                .map(|(r, f)| (*r, within(f.low), within(f.high)))
                .collect(),
        },
        RoundCurve {
            label: "cap (at it: not fooled)",
            colour: CHANCE_GREY,
            dashed: true,
            points: figures.iter().map(|(r, _)| (*r, cap as f64)).collect(),
            intervals: Vec::new(),
        },
    ];
    steps_lines_svg(id, title, &curves, max)
}

fn curve(
    rounds: &[(i64, crate::game::RoundMetrics)],
    label: &'static str,
    colour: &'static str,
    dashed: bool,
    value: fn(&crate::game::RoundMetrics) -> Option<f64>,
) -> RoundCurve {
    RoundCurve {
        label,
        colour,
        dashed,
        points: rounds
            .iter()
            .filter_map(|(round, m)| value(m).map(|v| (*round, v.clamp(0.0, 1.0))))
            .collect(),
        intervals: Vec::new(),
    }
}

/// Shares in [0, 1] by round, one line per curve with a dot per round (its value in the
/// tooltip): the round curves of a training run. `id` names the title element. "No data yet"
/// when no curve has a point.
pub fn round_curves_svg(id: &str, title: &str, curves: &[RoundCurve]) -> String {
    round_lines_svg(id, title, curves, 1.0, &accuracy_ticks(), 3)
}

/// Lines by round on a 0..=`max` vertical axis with gridlines at `ticks`; tooltips show values
/// with `decimals` decimals.
fn round_lines_svg(
    id: &str,
    title: &str,
    curves: &[RoundCurve],
    max: f64,
    ticks: &[(f64, String)],
    decimals: usize,
) -> String {
    let frame = Frame::WIDE;
    if curves.iter().all(|c| c.points.is_empty()) {
        return frame.no_data(id, title);
    }
    let rounds = Rounds::new(curves.iter().flat_map(|c| c.points.iter().map(|(r, _)| *r)));
    let mut svg = frame.open(id, title);
    frame.y_grid(&mut svg, max, ticks);
    rounds.labels(&frame, &mut svg);
    let mut entries = Vec::new();
    for c in curves {
        let points: Vec<Point> = c
            .points
            .iter()
            .map(|(round, value)| Point {
                x: rounds.x(&frame, *round),
                y: frame.y(*value, max),
                tooltip: format!("{}, round {round}: {value:.decimals$}", c.label),
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        polyline(&mut svg, &points, c.colour, c.dashed);
        for (round, low, high) in &c.intervals {
            let x = rounds.x(&frame, *round);
            svg.push_str(&format!(
                "<line class=\"interval\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.5\"><title>{}, round {round}: 95% interval [{low:.decimals$}, {high:.decimals$}]</title></line>",
                frame.y(*low, max),
                frame.y(*high, max),
                c.colour,
                escape(c.label)
            ));
        }
        for point in &points {
            circle(&mut svg, point, 3.5, c.colour, c.colour);
        }
        entries.push(Entry(
            Glyph::Line {
                colour: c.colour,
                dashed: c.dashed,
            },
            c.label,
            c.colour,
        ));
    }
    frame.legend(&mut svg, &entries);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Verdict;
    use crate::reports::{Agreement, Attempt, GroupReport, study_report};
    use ProverRole::{Helpful, Sneaky};

    fn group(
        checkpoint: &str,
        round: i64,
        role: ProverRole,
        (right, answered): (u64, u64),
        mean_ms: Option<f64>,
        mean_ms_when_right: Option<f64>,
    ) -> GroupReport {
        GroupReport {
            checkpoint: checkpoint.into(),
            round,
            role,
            judgements: answered,
            accuracy: Rate::of(right, answered),
            accuracy_on_correct: None,
            accuracy_on_incorrect: None,
            d_prime: None,
            timeout_rate: Some(0.0),
            mean_ms,
            median_ms: mean_ms,
            mean_ms_when_right,
            stated: 0,
            even_odds: 0,
            brier_score: None,
            log_score: None,
        }
    }

    fn report(groups: Vec<GroupReport>) -> StudyReport {
        StudyReport {
            excluded_raters: Vec::new(),
            groups,
            raters: Vec::new(),
            agreement: Agreement {
                solutions: 0,
                fleiss_kappa: None,
                krippendorff_alpha: None,
            },
            accuracy_by_time: Vec::new(),
            step_flags: Vec::new(),
            calibration: Vec::new(),
            human_auroc: crate::reports::HumanAuroc {
                solutions: 0,
                auroc: None,
            },
            integrity: Default::default(),
            arms: Vec::new(),
            accuracy_by_position: Vec::new(),
        }
    }

    fn rater(id: u128, (right, answered): (u64, u64), median_ms: Option<f64>) -> RaterReport {
        RaterReport {
            rater_id: Uuid::from_u128(id),
            judgements: answered,
            accuracy: Rate::of(right, answered),
            median_ms,
            timeouts: 0,
            p_value: 0.5,
            chance_level: false,
        }
    }

    /// The value of attribute `name` in the tag starting at `tag`.
    fn attribute<'a>(tag: &'a str, name: &str) -> &'a str {
        let start = tag
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {tag}"))
            + name.len()
            + 3;
        let len = tag[start..].find('"').expect("closing quote");
        &tag[start..start + len]
    }

    /// (cx, cy) of every circle, in document order.
    fn circles(svg: &str) -> Vec<(String, String)> {
        svg.match_indices("<circle ")
            .map(|(at, _)| {
                let tag = &svg[at..at + svg[at..].find('>').expect("tag end")];
                (
                    attribute(tag, "cx").to_string(),
                    attribute(tag, "cy").to_string(),
                )
            })
            .collect()
    }

    fn pair(x: &str, y: &str) -> (String, String) {
        (x.to_string(), y.to_string())
    }

    /// Checks that `svg` is one well-formed `<svg>` element: tags nest and close, attribute
    /// values are quoted without `<`, and every `&` starts an entity.
    fn assert_well_formed(svg: &str) {
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert!(!text.contains('>'), "stray > in {text:?}");
            for (at, _) in text.match_indices('&') {
                let entity = &text[at..at + text[at..].find(';').expect("entity end") + 1];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&entity),
                    "{entity}"
                );
            }
            let close = rest[open..].find('>').expect("tag end") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "< inside tag {tag:?}");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split(' ').next().unwrap_or(tag);
                assert!(
                    !stack.is_empty() || name == "svg",
                    "content outside <svg>: {tag}"
                );
                stack.push(name);
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(rest.is_empty(), "trailing {rest:?}");
    }

    #[test]
    fn speed_accuracy_curves_per_checkpoint() {
        let arm = |checkpoint: &str, limit: i64, right: u64| crate::reports::ArmReport {
            checkpoint: checkpoint.into(),
            time_limit_ms: limit,
            judgements: 10,
            accuracy: Rate::of(right, 10),
            timeout_rate: Some(0.0),
            mean_ms_when_right: None,
            mean_ms_when_right_low: None,
            mean_ms_when_right_high: None,
        };
        let svg = arms_svg(&[
            arm("p-r0", 15_000, 6),
            arm("p-r0", 45_000, 8),
            arm("p-r1", 15_000, 5),
            arm("p-r1", 45_000, 9),
        ]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(circles(&svg).len(), 4);
        assert!(svg.contains(">p-r1</text>"));
        assert!(svg.contains("<title>p-r0, 45 s: 0.800"));
        assert!(arms_svg(&[]).contains("No data yet"));
    }

    #[test]
    fn escape_replaces_the_five_xml_specials() {
        assert_eq!(
            escape(r#"<script>&"x"'y'"#),
            "&lt;script&gt;&amp;&quot;x&quot;&#39;y&#39;"
        );
        assert_eq!(escape("Zoë 3 > 2"), "Zoë 3 &gt; 2");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn seconds_axis_rounds_up_to_a_multiple_of_five() {
        assert_eq!(seconds_axis(0.0), (5, 1));
        assert_eq!(seconds_axis(0.4), (5, 1));
        assert_eq!(seconds_axis(5.0), (5, 1));
        assert_eq!(seconds_axis(5.1), (10, 2));
        assert_eq!(seconds_axis(12.5), (15, 5));
        assert_eq!(seconds_axis(16.0), (20, 5));
        assert_eq!(seconds_axis(44.9), (45, 15));
        assert_eq!(seconds_axis(33.0), (35, 10));
        assert_eq!(seconds_axis(30.0), (30, 10));
        assert_eq!(seconds_axis(60.0), (60, 15));
        assert_eq!(seconds_axis(f64::NAN), (5, 1));
        for largest in 0..200 {
            let (max, step) = seconds_axis(largest as f64 / 2.0);
            let lines = max / step + 1;
            assert!((4..=6).contains(&lines), "{max} by {step}");
            assert!(step <= 2 || step % 5 == 0, "{max} by {step}");
            assert_eq!(max % 5, 0);
        }
    }

    #[test]
    fn accuracy_pools_the_checkpoints_of_a_round() {
        let svg = accuracy_by_round_svg(&report(vec![
            group("a", 0, Helpful, (3, 4), None, None),
            group("b", 0, Helpful, (1, 4), None, None),
            group("a", 0, Sneaky, (1, 4), None, None),
            group("c", 1, Helpful, (4, 4), None, None),
            group("c", 1, Sneaky, (0, 0), None, None),
        ]));
        assert_well_formed(&svg);
        assert!(svg.contains(
            "role=\"img\" aria-labelledby=\"plot-accuracy-title\" class=\"plot\"><title id=\"plot-accuracy-title\">"
        ));
        // Plot area 320 × 200 at (50, 20), accuracy 0 at the bottom: y = 20 + (1 − a) · 200.
        // Rounds 0 and 1 at the left (50) and right (50 + 320) edges. Helpful round 0: 4 of 8
        // → y 120; round 1: 4 of 4 → 20. Sneaky round 0: 1 of 4 → 170; round 1 has no answers.
        assert_eq!(
            circles(&svg),
            vec![
                pair("50.0", "120.0"),
                pair("370.0", "20.0"),
                pair("50.0", "170.0")
            ]
        );
        assert!(svg.contains("points=\"50.0,120.0 370.0,20.0\""));
        assert!(svg.contains("<title>helpful, round 0: 0.500 ["));
        assert!(svg.contains("], n=8</title>"));
        // One interval bar per point: Wilson interval of 4/8 drawn as a vertical line at x 50.
        let (low, high) = crate::metrics::wilson_interval(4, 8, crate::metrics::Z_95).expect("ci");
        assert!(svg.contains(&format!(
            "<line x1=\"50.0\" x2=\"50.0\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1b6ac9\"/>",
            20.0 + (1.0 - low) * 200.0,
            20.0 + (1.0 - high) * 200.0
        )));
        assert!(svg.contains(">round 0</text>") && svg.contains(">round 1</text>"));
        assert!(svg.contains(">helpful</text>") && svg.contains(">sneaky</text>"));
    }

    #[test]
    fn a_single_round_sits_in_the_middle() {
        let svg = accuracy_by_round_svg(&report(vec![
            group("a", 2, Helpful, (1, 2), None, None),
            group("a", 2, Sneaky, (2, 2), None, None),
        ]));
        assert_eq!(
            circles(&svg),
            vec![pair("210.0", "120.0"), pair("210.0", "20.0")]
        );
    }

    #[test]
    fn time_pools_right_judgements_weighted_by_their_number() {
        let svg = time_by_round_svg(&report(vec![
            // Right: 3 at 10 s and 1 at 20 s → 12.5 s; answered: 4 at 12 s, 2 at 24 s → 16 s.
            group("a", 1, Helpful, (3, 4), Some(12_000.0), Some(10_000.0)),
            group("b", 1, Helpful, (1, 2), Some(24_000.0), Some(20_000.0)),
            // No right judgement: only the dashed point (8 s).
            group("a", 1, Sneaky, (0, 3), Some(8_000.0), None),
        ]));
        assert_well_formed(&svg);
        assert!(svg.contains("<title id=\"plot-time-title\">"));
        // Largest value 16 s → axis 0..20 s in steps of 5 s: y = 20 + (1 − s/20) · 200.
        for label in ["0 s", "5 s", "10 s", "15 s", "20 s"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(!svg.contains(">25 s</text>"));
        // One round → x 210. Dashed points first per role, then the solid ones.
        assert_eq!(
            circles(&svg),
            vec![
                pair("210.0", "60.0"),
                pair("210.0", "95.0"),
                pair("210.0", "140.0")
            ]
        );
        assert!(svg.contains("<title>helpful, round 1: 12.5 s when right (n=4)</title>"));
        assert!(svg.contains("<title>helpful, round 1: 16.0 s all answered (n=6)</title>"));
        assert!(svg.contains("<title>sneaky, round 1: 8.0 s all answered (n=3)</title>"));
        assert!(!svg.contains("sneaky, round 1: 0.0 s when right"));
        assert_eq!(svg.matches("stroke-dasharray=\"5 4\"").count(), 2 + 1);
        for legend in [">helpful<", ">sneaky<", ">when right<", ">all answered<"] {
            assert!(svg.contains(legend), "{legend}");
        }
    }

    #[test]
    fn time_plot_from_attempts() {
        let attempt = |rater: u128, round: i64, verdict: Verdict, ms: i64| Attempt {
            rater_id: Uuid::from_u128(rater),
            solution_id: Uuid::from_u128(100 + rater),
            problem_id: Uuid::from_u128(1),
            checkpoint: format!("p{round}"),
            round,
            role: Helpful,
            is_correct: true,
            verdict,
            server_elapsed_ms: ms,
            first_wrong_step: None,
            stated_probability: None,
            integrity_flagged: false,
            time_limit_ms: 45_000,
            position: None,
        };
        let study = study_report(
            &[
                attempt(1, 0, Verdict::Correct, 10_000),
                attempt(2, 0, Verdict::Correct, 20_000),
                attempt(3, 0, Verdict::Wrong, 30_000),
                attempt(4, 0, Verdict::Timeout, 45_000),
                attempt(1, 1, Verdict::Correct, 4_000),
            ],
            false,
        );
        let svg = time_by_round_svg(&study);
        // Round 0: right 15 s (n=2), answered 20 s (n=3), the timeout left out; round 1: 4 s.
        // Axis 0..20 s; rounds at x 50 and 370.
        assert!(svg.contains("<title>helpful, round 0: 15.0 s when right (n=2)</title>"));
        assert_eq!(
            circles(&svg),
            vec![
                pair("50.0", "20.0"),
                pair("370.0", "180.0"),
                pair("50.0", "70.0"),
                pair("370.0", "180.0")
            ]
        );
        assert_eq!(circles(&accuracy_by_round_svg(&study)).len(), 2);
    }

    #[test]
    fn scatter_places_raters_and_marks_chance_and_exclusion() {
        let mut guesser = rater(2, (5, 10), Some(30_000.0));
        guesser.chance_level = true;
        let raters = vec![
            rater(1, (8, 10), Some(12_000.0)),
            guesser,
            rater(3, (0, 0), None),
        ];
        let names: BTreeMap<Uuid, String> = [(Uuid::from_u128(1), "Ada".to_string())].into();
        let svg = rater_scatter_svg(&raters, &[Uuid::from_u128(2)].into(), &names);
        assert_well_formed(&svg);
        assert!(svg.contains("<title id=\"plot-raters-title\">"));
        // Axis 0..30 s over 320 px from x 50: x = 50 + s/30 · 320; accuracy as before.
        assert_eq!(
            circles(&svg),
            vec![pair("178.0", "60.0"), pair("370.0", "120.0")]
        );
        // Chance: a dashed line across the plot area at accuracy 0.5.
        assert!(svg.contains(
            "<line class=\"chance\" x1=\"50.0\" x2=\"370.0\" y1=\"120.0\" y2=\"120.0\" stroke=\"#999\" stroke-width=\"1.5\" stroke-dasharray=\"5 4\"/>"
        ));
        // Above chance filled dark; the guesser hollow grey and crossed.
        assert!(svg.contains("cy=\"60.0\" r=\"4.0\" fill=\"#333\" stroke=\"#333\""));
        assert!(svg.contains("cy=\"120.0\" r=\"4.0\" fill=\"#fff\" stroke=\"#999\""));
        assert_eq!(svg.matches("class=\"excluded\"").count(), 1);
        assert!(svg.contains("d=\"M364.0,114.0L376.0,126.0M364.0,126.0L376.0,114.0\""));
        let ci = Rate::of(8, 10).expect("rate");
        assert!(svg.contains(&format!(
            "<title>Ada: accuracy 0.800 [{:.3}, {:.3}] (n=10), median 12.0 s</title>",
            ci.low, ci.high
        )));
        assert!(svg.contains(&format!(
            "<title>rater {}: accuracy 0.500",
            Uuid::from_u128(2)
        )));
        assert!(svg.contains("median 30.0 s, chance-level, excluded</title>"));
        for label in ["0 s", "10 s", "20 s", "30 s", "0.50"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
        for legend in [
            ">above chance<",
            ">chance-level<",
            ">excluded<",
            ">chance (0.5)<",
        ] {
            assert!(svg.contains(legend), "{legend}");
        }
    }

    #[test]
    fn scatter_escapes_rater_names() {
        let names: BTreeMap<Uuid, String> =
            [(Uuid::from_u128(1), r#"<script>&"x"'"#.to_string())].into();
        let svg = rater_scatter_svg(&[rater(1, (3, 4), Some(2_000.0))], &HashSet::new(), &names);
        assert_well_formed(&svg);
        assert!(!svg.contains("<script"));
        assert!(svg.contains("<title>&lt;script&gt;&amp;&quot;x&quot;&#39;: accuracy 0.750"));
        assert!(!svg.contains("class=\"excluded\""));
    }

    #[test]
    fn empty_inputs_say_no_data() {
        let nothing = report(vec![group("a", 0, Helpful, (0, 0), None, None)]);
        let unanswered = [rater(1, (0, 0), None)];
        let plots = [
            (accuracy_by_round_svg(&nothing), "plot-accuracy-title"),
            (time_by_round_svg(&nothing), "plot-time-title"),
            (time_by_round_svg(&report(Vec::new())), "plot-time-title"),
            (
                rater_scatter_svg(&unanswered, &HashSet::new(), &BTreeMap::new()),
                "plot-raters-title",
            ),
            (
                rater_scatter_svg(&[], &HashSet::new(), &BTreeMap::new()),
                "plot-raters-title",
            ),
        ];
        for (svg, id) in &plots {
            assert_well_formed(svg);
            assert!(svg.contains(&format!("aria-labelledby=\"{id}\"")), "{svg}");
            assert!(svg.contains(">No data yet</text>"), "{svg}");
            assert_eq!(circles(svg).len(), 0);
        }
    }

    #[test]
    fn output_is_deterministic() {
        let study = report(vec![
            group("a", 0, Helpful, (3, 4), Some(9_000.0), Some(8_000.0)),
            group("a", 1, Sneaky, (1, 4), Some(7_000.0), Some(6_000.0)),
        ]);
        let raters = vec![
            rater(1, (3, 4), Some(1_000.0)),
            rater(2, (1, 4), Some(2_000.0)),
        ];
        let excluded: HashSet<Uuid> = [Uuid::from_u128(1), Uuid::from_u128(2)].into();
        let first = (
            accuracy_by_round_svg(&study),
            time_by_round_svg(&study),
            rater_scatter_svg(&raters, &excluded, &BTreeMap::new()),
        );
        for _ in 0..3 {
            let again = (
                accuracy_by_round_svg(&study),
                time_by_round_svg(&study),
                rater_scatter_svg(&raters, &excluded, &BTreeMap::new()),
            );
            assert_eq!(again, first);
        }
    }
}
