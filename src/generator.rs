//! Procedural generator of grade-school math word problems.
//!
//! The project needs problems it owns: built-in problems for studies that
//! run without an external data set, and training data for the tiny default
//! prover. Every generated problem comes with two solutions in GSM8K style
//! (one step per line, `<<a op b=c>>` calculator annotations, a final
//! `#### N` line):
//!
//! - a *helpful* solution that is correct, and
//! - a *sneaky* solution of the same shape that contains exactly one subtle
//!   logical error (wrong quantity, wrong base for a percentage, adding
//!   instead of subtracting, an off-by-one count, dividing by the wrong group
//!   size, a forgotten item) which carries through to a wrong final answer.
//!
//! Every annotation in both solutions is arithmetically true: the error is in
//! the reasoning, never in the arithmetic, because the prover's sampler
//! enforces the calculator annotations. Only single-operation annotations are
//! emitted, apart from sums such as `a+b+c`, which read the same under any
//! evaluation order. All intermediate results are non-negative integers and
//! every division is exact.
//!
//! Generation is fully deterministic: a hand-written SplitMix64 generator
//! drives every choice, so the same seed yields the same problems on every
//! platform and version of the standard library.

use std::collections::HashSet;
use std::fmt;

/// One generated problem with its reference (helpful) solution and a subtly
/// wrong (sneaky) one.
///
/// Exists so that built-in problems and prover training pairs carry both
/// roles of the prover–verifier game together with their ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedProblem {
    /// The word problem shown to raters and to the prover.
    pub question: String,
    /// Ground truth, a positive integer.
    pub answer: i64,
    /// Correct GSM8K-style solution, one step per line, calculator
    /// annotations, last line `#### {answer}`.
    pub helpful_solution: String,
    /// Same style with one logical error, last line `#### {sneaky_answer}`.
    pub sneaky_solution: String,
    /// The wrong final answer the sneaky solution commits to (positive,
    /// never equal to `answer`).
    pub sneaky_answer: i64,
    /// Short name of the template used, e.g. `"shopping-change"`.
    pub template: &'static str,
}

/// Deterministic generator of distinct problems.
///
/// Exists so callers can stream as many problems as they need from one seed
/// and get the same sequence on every platform; it remembers the questions
/// it has produced so it never repeats one.
pub struct ProblemGenerator {
    rng: Rng,
    seen: HashSet<String>,
}

impl ProblemGenerator {
    /// A generator whose whole output is determined by `seed`.
    ///
    /// Exists so that data sets and built-in problems are reproducible.
    pub fn new(seed: u64) -> Self {
        Self::drawing_from(seed, &POOLS)
    }

    /// A generator whose templates draw people and colours from `pools`.
    fn drawing_from(seed: u64, pools: &'static Pools) -> Self {
        Self {
            rng: Rng::new(seed, pools),
            seen: HashSet::new(),
        }
    }

    /// The next problem, whose question differs from every earlier one from
    /// this generator.
    ///
    /// Exists as the single step of generation. Templates are chosen
    /// uniformly; a template whose random draw violates a constraint (an
    /// inexact division, a negative intermediate, a sneaky answer equal to the
    /// true one) or repeats a question is simply drawn again. Only after an
    /// absurd number of consecutive repeats (far beyond any realistic use)
    /// would a repeated question be returned rather than looping forever.
    pub fn next_problem(&mut self) -> GeneratedProblem {
        let mut repeats = 0usize;
        loop {
            let index = self.rng.below(TEMPLATES.len() as u64) as usize;
            let template = TEMPLATES[index % TEMPLATES.len()];
            for _ in 0..ATTEMPTS_PER_TEMPLATE {
                let Some(problem) = template(&mut self.rng) else {
                    continue;
                };
                if self.seen.insert(problem.question.clone()) || repeats >= MAX_REPEATS {
                    return problem;
                }
                repeats += 1;
            }
        }
    }
}

/// `count` problems from `seed`, all with distinct questions.
///
/// Exists as the convenient batch form of [`ProblemGenerator`] for seeding
/// built-in problems and writing training files.
pub fn generate(seed: u64, count: usize) -> Vec<GeneratedProblem> {
    let mut generator = ProblemGenerator::new(seed);
    (0..count).map(|_| generator.next_problem()).collect()
}

/// The people's names built-in problems use.
pub fn built_in_names() -> Vec<&'static str> {
    NAMES.iter().map(|(name, _)| *name).collect()
}

/// `count` problems from `seed` for training a prover: the same templates with far more
/// people's names and colours than the built-in problems use.
///
/// Exists because a prover trained on 32 names learns them as a prior instead of copying the
/// question's name: the tiny prover trained on them gave the question's name only 29.2 % of
/// the probability at the game's temperature (`train coherence`), and most of its incoherent
/// solutions named someone else (issue 24). With a few hundred names seen rarely each, copying from the question is
/// the only way to predict them.
pub fn generate_for_training(seed: u64, count: usize) -> Vec<GeneratedProblem> {
    let mut generator = ProblemGenerator::drawing_from(seed, &TRAINING_POOLS);
    (0..count).map(|_| generator.next_problem()).collect()
}

/// The problems as GSM8K JSONL: one `{"question": …, "answer": …}` object per
/// line with the helpful solution as the answer, lines joined by `\n`.
///
/// Exists so generated problems go through the normal GSM8K importer like any
/// other data set.
pub fn to_gsm8k_jsonl(problems: &[GeneratedProblem]) -> String {
    let mut out = String::new();
    for (k, problem) in problems.iter().enumerate() {
        if k > 0 {
            out.push('\n');
        }
        out.push_str("{\"question\": ");
        push_json_string(&mut out, &problem.question);
        out.push_str(", \"answer\": ");
        push_json_string(&mut out, &problem.helpful_solution);
        out.push('}');
    }
    out
}

/// Append `s` as a JSON string literal (RFC 8259 escaping).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// Generation machinery
// ---------------------------------------------------------------------------

/// Draws of one template before another template is chosen.
const ATTEMPTS_PER_TEMPLATE: usize = 64;

/// Repeated questions tolerated before a repeat is returned anyway.
const MAX_REPEATS: usize = 1_000_000;

/// Upper bound (inclusive) for final answers and intermediate values.
const MAX_VALUE: i64 = 99_999;

/// The words a template draws people and colours from, each pool in parts drawn from as one
/// list (so the training pools extend the built-in ones without repeating them).
struct Pools {
    names: &'static [&'static [(&'static str, bool)]],
    colours: &'static [&'static [&'static str]],
}

/// What built-in problems and data sets use.
const POOLS: Pools = Pools {
    names: &[&NAMES],
    colours: &[&COLOURS],
};

/// What prover training uses (see [`generate_for_training`]).
const TRAINING_POOLS: Pools = Pools {
    names: &[&NAMES, &MORE_NAMES],
    colours: &[&COLOURS, &MORE_COLOURS],
};

/// The `index`-th entry of a pool kept in parts (`index` below the total length).
fn nth<T: Copy>(parts: &[&[T]], mut index: usize) -> T {
    for part in parts {
        if index < part.len() {
            return part[index];
        }
        index -= part.len();
    }
    parts[0][0]
}

/// Entries in a pool kept in parts.
fn pool_len<T>(parts: &[&[T]]) -> usize {
    parts.iter().map(|part| part.len()).sum()
}

/// SplitMix64 (tiny, fast, and identical on every platform) with the pools it draws from.
struct Rng {
    state: u64,
    pools: &'static Pools,
}

impl Rng {
    fn new(seed: u64, pools: &'static Pools) -> Self {
        Self { state: seed, pools }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish value in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Value in `lo..=hi` (`lo` when the range is empty).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }

    fn coin(&mut self) -> bool {
        self.below(2) == 1
    }

    fn pick<T: Copy, const N: usize>(&mut self, items: &[T; N]) -> T {
        items[self.below(N as u64) as usize % N]
    }

    /// `count` different indices below `n` in random order (a partial
    /// Fisher–Yates shuffle; fewer when `n < count`).
    fn distinct_indices(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        let count = count.min(n);
        for k in 0..count {
            let j = k + self.below((n - k) as u64) as usize;
            all.swap(k, j);
        }
        all.truncate(count);
        all
    }

    /// Two different indices below `n` (`n` must be at least 2).
    fn two_indices(&mut self, n: usize) -> (usize, usize) {
        match self.distinct_indices(n, 2)[..] {
            [i, j] => (i, j),
            _ => (0, 1),
        }
    }

    fn person(&mut self) -> Person {
        let names = self.pools.names;
        let n = pool_len(names);
        let (name, female) = nth(names, self.below(n as u64) as usize % n);
        Person::new(name, female)
    }

    fn two_people(&mut self) -> (Person, Person) {
        let names = self.pools.names;
        let (i, j) = self.two_indices(pool_len(names));
        let (a, fa) = nth(names, i);
        let (b, fb) = nth(names, j);
        (Person::new(a, fa), Person::new(b, fb))
    }

    /// Three different colours.
    fn three_colours(&mut self) -> [&'static str; 3] {
        let colours = self.pools.colours;
        let n = pool_len(colours);
        let picked = self.distinct_indices(n, 3);
        [0, 1, 2].map(|k| nth(colours, picked.get(k).copied().unwrap_or(k) % n))
    }
}

/// First names with the pronoun set they use (`true` = she/her).
const NAMES: [(&str, bool); 32] = [
    ("Mia", true),
    ("Liam", false),
    ("Aisha", true),
    ("Mateo", false),
    ("Priya", true),
    ("Kenji", false),
    ("Zara", true),
    ("Omar", false),
    ("Sofia", true),
    ("Diego", false),
    ("Amara", true),
    ("Noah", false),
    ("Fatima", true),
    ("Lucas", false),
    ("Mei", true),
    ("Tariq", false),
    ("Elena", true),
    ("Kwame", false),
    ("Hana", true),
    ("Ravi", false),
    ("Chloe", true),
    ("Jamal", false),
    ("Ingrid", true),
    ("Tomas", false),
    ("Nadia", true),
    ("Samuel", false),
    ("Yuki", true),
    ("Arjun", false),
    ("Leila", true),
    ("Emeka", false),
    ("Rosa", true),
    ("Finn", false),
];

/// Names prover training draws from besides the built-in ones (see [`generate_for_training`]).
const MORE_NAMES: [(&str, bool); 210] = [
    ("Ada", true),
    ("Adaeze", true),
    ("Adela", true),
    ("Agnes", true),
    ("Aiko", true),
    ("Alba", true),
    ("Alesha", true),
    ("Alina", true),
    ("Alma", true),
    ("Amani", true),
    ("Amina", true),
    ("Ana", true),
    ("Anika", true),
    ("Anjali", true),
    ("Asha", true),
    ("Astrid", true),
    ("Aya", true),
    ("Ayesha", true),
    ("Beatriz", true),
    ("Bianca", true),
    ("Bora", true),
    ("Camila", true),
    ("Carmen", true),
    ("Cecile", true),
    ("Chiara", true),
    ("Chidi", true),
    ("Clara", true),
    ("Dalia", true),
    ("Daria", true),
    ("Delia", true),
    ("Dina", true),
    ("Dora", true),
    ("Edith", true),
    ("Eliza", true),
    ("Elsa", true),
    ("Esme", true),
    ("Esther", true),
    ("Eva", true),
    ("Farah", true),
    ("Freya", true),
    ("Gita", true),
    ("Greta", true),
    ("Hadiya", true),
    ("Helga", true),
    ("Hilda", true),
    ("Ines", true),
    ("Irene", true),
    ("Isla", true),
    ("Jana", true),
    ("Jasmin", true),
    ("Jia", true),
    ("Joanna", true),
    ("Julia", true),
    ("Kaia", true),
    ("Kamala", true),
    ("Karin", true),
    ("Keiko", true),
    ("Kira", true),
    ("Lana", true),
    ("Lara", true),
    ("Laila", true),
    ("Lena", true),
    ("Lina", true),
    ("Lucia", true),
    ("Luisa", true),
    ("Mala", true),
    ("Mara", true),
    ("Maren", true),
    ("Marta", true),
    ("Maya", true),
    ("Meera", true),
    ("Mina", true),
    ("Mira", true),
    ("Nala", true),
    ("Naomi", true),
    ("Nell", true),
    ("Nia", true),
    ("Nina", true),
    ("Noor", true),
    ("Olga", true),
    ("Paloma", true),
    ("Petra", true),
    ("Pilar", true),
    ("Rana", true),
    ("Rania", true),
    ("Rhea", true),
    ("Rina", true),
    ("Rita", true),
    ("Ruth", true),
    ("Sabine", true),
    ("Sana", true),
    ("Sara", true),
    ("Selma", true),
    ("Shira", true),
    ("Sina", true),
    ("Siri", true),
    ("Suki", true),
    ("Tala", true),
    ("Tanvi", true),
    ("Thea", true),
    ("Uma", true),
    ("Vera", true),
    ("Wanda", true),
    ("Ximena", true),
    ("Yara", true),
    ("Yasmin", true),
    ("Zainab", true),
    ("Zoe", true),
    ("Zuri", true),
    ("Aarav", false),
    ("Abdul", false),
    ("Adil", false),
    ("Ahmed", false),
    ("Aidan", false),
    ("Akira", false),
    ("Alec", false),
    ("Alvaro", false),
    ("Amir", false),
    ("Anders", false),
    ("Andre", false),
    ("Anton", false),
    ("Aziz", false),
    ("Bao", false),
    ("Bruno", false),
    ("Caleb", false),
    ("Carlos", false),
    ("Chen", false),
    ("Cyrus", false),
    ("Dario", false),
    ("Dev", false),
    ("Dmitri", false),
    ("Eli", false),
    ("Emil", false),
    ("Enzo", false),
    ("Erik", false),
    ("Ezra", false),
    ("Felix", false),
    ("Femi", false),
    ("Gabe", false),
    ("Hamza", false),
    ("Hans", false),
    ("Hiro", false),
    ("Hugo", false),
    ("Idris", false),
    ("Igor", false),
    ("Ivan", false),
    ("Jalen", false),
    ("Jonas", false),
    ("Jorge", false),
    ("Juan", false),
    ("Kai", false),
    ("Karim", false),
    ("Kofi", false),
    ("Lars", false),
    ("Leon", false),
    ("Levi", false),
    ("Luca", false),
    ("Malik", false),
    ("Marco", false),
    ("Milan", false),
    ("Milo", false),
    ("Musa", false),
    ("Nikhil", false),
    ("Nils", false),
    ("Obi", false),
    ("Olaf", false),
    ("Oscar", false),
    ("Otto", false),
    ("Pablo", false),
    ("Pedro", false),
    ("Raul", false),
    ("Reza", false),
    ("Rohan", false),
    ("Rui", false),
    ("Sami", false),
    ("Sanjay", false),
    ("Sven", false),
    ("Taro", false),
    ("Theo", false),
    ("Tobias", false),
    ("Tunde", false),
    ("Umar", false),
    ("Vikram", false),
    ("Viktor", false),
    ("Wei", false),
    ("Xavier", false),
    ("Yannick", false),
    ("Yosef", false),
    ("Yusuf", false),
    ("Zain", false),
    ("Zoltan", false),
    ("Ade", false),
    ("Bilal", false),
    ("Cheng", false),
    ("Elias", false),
    ("Farid", false),
    ("Goran", false),
    ("Ilya", false),
    ("Jin", false),
    ("Kenta", false),
    ("Lorenzo", false),
    ("Mehmet", false),
    ("Niko", false),
    ("Omari", false),
    ("Paolo", false),
    ("Quinn", false),
    ("Rafael", false),
    ("Soren", false),
    ("Tiago", false),
    ("Vasco", false),
];

/// Colours of the built-in problems.
const COLOURS: [&str; 8] = [
    "red", "blue", "green", "yellow", "purple", "orange", "white", "pink",
];

/// Colours prover training draws from besides the built-in ones.
const MORE_COLOURS: [&str; 28] = [
    "black",
    "brown",
    "grey",
    "gold",
    "silver",
    "teal",
    "navy",
    "maroon",
    "beige",
    "violet",
    "indigo",
    "turquoise",
    "lime",
    "crimson",
    "amber",
    "ivory",
    "lavender",
    "coral",
    "olive",
    "cyan",
    "magenta",
    "scarlet",
    "tan",
    "peach",
    "mint",
    "plum",
    "cream",
    "bronze",
];

#[derive(Clone, Copy)]
struct Person {
    name: &'static str,
    he: &'static str,
    he_cap: &'static str,
    him: &'static str,
    his: &'static str,
}

impl Person {
    fn new(name: &'static str, female: bool) -> Self {
        if female {
            Self {
                name,
                he: "she",
                he_cap: "She",
                him: "her",
                his: "her",
            }
        } else {
            Self {
                name,
                he: "he",
                he_cap: "He",
                him: "him",
                his: "his",
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    /// The exact, non-negative, bounded result, or None.
    fn apply(self, a: i64, b: i64) -> Option<i64> {
        let value = match self {
            Op::Add => a.checked_add(b)?,
            Op::Sub => a.checked_sub(b)?,
            Op::Mul => a.checked_mul(b)?,
            Op::Div => {
                if b <= 0 || a % b != 0 {
                    return None;
                }
                a / b
            }
        };
        (0..=MAX_VALUE).contains(&value).then_some(value)
    }
}

/// One calculation: its value and its GSM8K text `a*b=<<a*b=c>>c`.
struct Step {
    value: i64,
    expr: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}=<<{}={}>>{}",
            self.expr, self.expr, self.value, self.value
        )
    }
}

/// A solution being written. Any invalid calculation marks the whole
/// solution invalid, so templates can be written straight-line and the draw
/// is rejected afterwards.
struct Work {
    lines: Vec<String>,
    ok: bool,
}

/// A finished solution text and its final answer.
struct Solution {
    text: String,
    answer: i64,
}

impl Work {
    fn new() -> Self {
        Self {
            lines: Vec::new(),
            ok: true,
        }
    }

    fn calc(&mut self, a: i64, op: Op, b: i64) -> Step {
        let value = match (a >= 0 && b >= 0).then(|| op.apply(a, b)).flatten() {
            Some(v) => v,
            None => {
                self.ok = false;
                1
            }
        };
        Step {
            value,
            expr: format!("{a}{}{b}", op.symbol()),
        }
    }

    fn add(&mut self, a: i64, b: i64) -> Step {
        self.calc(a, Op::Add, b)
    }

    fn sub(&mut self, a: i64, b: i64) -> Step {
        self.calc(a, Op::Sub, b)
    }

    fn mul(&mut self, a: i64, b: i64) -> Step {
        self.calc(a, Op::Mul, b)
    }

    fn div(&mut self, a: i64, b: i64) -> Step {
        self.calc(a, Op::Div, b)
    }

    /// A sum of several terms written as one chain `a+b+c`.
    fn sum(&mut self, terms: &[i64]) -> Step {
        let mut value = 0i64;
        for &t in terms {
            match Op::Add.apply(value, t) {
                Some(v) if t >= 0 => value = v,
                _ => self.ok = false,
            }
        }
        let expr = terms
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join("+");
        Step { value, expr }
    }

    fn line(&mut self, line: String) {
        self.lines.push(line);
    }

    /// One line computing `pct`% of `base`, introduced by `intro` (e.g.
    /// "The discount is"); returns the value.
    fn percent(&mut self, intro: &str, base: i64, pct: i64) -> i64 {
        let g = gcd(pct, 100);
        let (numer, denom) = (pct / g.max(1), 100 / g.max(1));
        let part = self.div(base, denom);
        if numer == 1 {
            self.line(format!("{intro} {pct}% of {base}, which is {part}."));
            part.value
        } else {
            let unit = 100 / denom;
            let whole = self.mul(part.value, numer);
            self.line(format!(
                "{intro} {pct}% of {base}. Since {unit}% of {base} is {part}, {pct}% is {whole}."
            ));
            whole.value
        }
    }

    fn finish(mut self, answer: i64) -> Option<Solution> {
        if !self.ok || answer <= 0 {
            return None;
        }
        self.lines.push(format!("#### {answer}"));
        Some(Solution {
            text: self.lines.join("\n"),
            answer,
        })
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Denominator of `pct`% as a reduced fraction (20% -> 5, 30% -> 10).
fn percent_denominator(pct: i64) -> i64 {
    100 / gcd(pct, 100).max(1)
}

/// Turn a template's draw into a problem: the helpful solution must be valid
/// and one of the template's `kinds` sneaky errors (tried from a random
/// starting kind) must give a valid, different, positive answer.
fn assemble(
    rng: &mut Rng,
    template: &'static str,
    question: String,
    kinds: usize,
    solve: &dyn Fn(Option<usize>) -> Option<Solution>,
) -> Option<GeneratedProblem> {
    let helpful = solve(None)?;
    if helpful.answer > MAX_VALUE {
        return None;
    }
    let start = rng.below(kinds as u64) as usize;
    (0..kinds).find_map(|i| {
        let sneaky = solve(Some((start + i) % kinds))?;
        (sneaky.answer != helpful.answer && sneaky.answer <= MAX_VALUE).then(|| GeneratedProblem {
            question: question.clone(),
            answer: helpful.answer,
            helpful_solution: helpful.text.clone(),
            sneaky_solution: sneaky.text,
            sneaky_answer: sneaky.answer,
            template,
        })
    })
}

type Template = fn(&mut Rng) -> Option<GeneratedProblem>;

/// Every template; chosen uniformly by [`ProblemGenerator::next_problem`].
const TEMPLATES: [Template; 20] = [
    shopping_change,
    discount_price,
    travel_distance,
    wage_overtime,
    weekly_wage,
    share_remainder,
    ages_future,
    ages_past,
    multi_item_total,
    fraction_of,
    percent_budget,
    percent_change,
    weekly_production,
    inclusive_days,
    fence_posts,
    saving_goal,
    recipe_scaling,
    fence_perimeter,
    room_carpet,
    packs_needed,
];

// ---------------------------------------------------------------------------
// Templates. Each draws its numbers, writes the question, and describes the
// solution once as a closure; `err` selects the sneaky error (None = correct).
// ---------------------------------------------------------------------------

/// Two kinds of items bought, paid with a bill. Errors: the second item's
/// cost uses the first item's count; the total adds the second item's unit
/// price instead of its cost.
fn shopping_change(r: &mut Rng) -> Option<GeneratedProblem> {
    const ITEMS: [(&str, i64, i64); 14] = [
        ("notebooks", 2, 6),
        ("pens", 1, 4),
        ("folders", 2, 5),
        ("markers", 1, 3),
        ("erasers", 1, 2),
        ("mugs", 4, 9),
        ("candles", 3, 8),
        ("comic books", 3, 8),
        ("packs of gum", 1, 3),
        ("bottles of juice", 2, 4),
        ("apples", 1, 2),
        ("sandwiches", 4, 7),
        ("toy cars", 3, 9),
        ("bracelets", 4, 10),
    ];
    const STORES: [&str; 5] = [
        "corner store",
        "school fair",
        "market",
        "gift shop",
        "supermarket",
    ];
    let who = r.person();
    let (i, j) = r.two_indices(ITEMS.len());
    let (item1, lo1, hi1) = ITEMS[i];
    let (item2, lo2, hi2) = ITEMS[j];
    let (n1, n2) = (r.range(2, 8), r.range(2, 8));
    let (p1, p2) = (r.range(lo1, hi1), r.range(lo2, hi2));
    let total = n1 * p1 + n2 * p2;
    let bill = [20, 50, 100, 200].into_iter().find(|&b| b > total)?;
    let (name, he) = (who.name, who.he);
    let question = if r.coin() {
        format!(
            "{name} buys {n1} {item1} for ${p1} each and {n2} {item2} for ${p2} each. {} pays with a ${bill} bill. How much change does {he} get, in dollars?",
            who.he_cap
        )
    } else {
        let store = r.pick(&STORES);
        format!(
            "At the {store}, {name} picks up {n1} {item1} that cost ${p1} each and {n2} {item2} that cost ${p2} each. If {he} hands the cashier ${bill}, how many dollars of change should {he} receive?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = w.mul(n1, p1);
        w.line(format!("{name} spends {a} dollars on the {item1}."));
        let b = if err == Some(0) {
            w.mul(n1, p2)
        } else {
            w.mul(n2, p2)
        };
        w.line(format!("{} spends {b} dollars on the {item2}.", who.he_cap));
        let t = if err == Some(1) {
            w.add(a.value, p2)
        } else {
            w.add(a.value, b.value)
        };
        w.line(format!("In total {he} spends {t} dollars."));
        let c = w.sub(bill, t.value);
        w.line(format!("So {} change is {c} dollars.", who.his));
        w.finish(c.value)
    };
    assemble(r, "shopping-change", question, 2, &solve)
}

/// Quantity times unit price with a percentage discount on the total.
/// Error: the discount is taken as a percentage of one item's price (wrong
/// base).
fn discount_price(r: &mut Rng) -> Option<GeneratedProblem> {
    const ITEMS: [(&str, i64, i64); 8] = [
        ("shirts", 10, 30),
        ("board games", 12, 40),
        ("potted plants", 5, 20),
        ("pairs of shoes", 20, 60),
        ("lamps", 15, 40),
        ("backpacks", 15, 45),
        ("books", 6, 20),
        ("puzzles", 8, 25),
    ];
    const PCTS: [i64; 8] = [10, 15, 20, 25, 30, 40, 50, 60];
    let who = r.person();
    let (items, lo, hi) = r.pick(&ITEMS);
    let pct = r.pick(&PCTS);
    let denom = percent_denominator(pct);
    let m = r.range((lo + denom - 1) / denom, hi / denom);
    let p = denom * m;
    let n = r.range(2, 9);
    let name = who.name;
    let question = if r.coin() {
        format!(
            "A store sells {items} for ${p} each. {name} buys {n} {items} and gets a {pct}% discount on the whole purchase. How much does {} pay in dollars?",
            who.he
        )
    } else {
        format!(
            "{name} needs {n} {items}. Each one costs ${p}, and the shop is offering {pct}% off the total bill this week. How many dollars will {name} pay?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let t = w.mul(n, p);
        w.line(format!(
            "Before the discount, the {items} cost {t} dollars."
        ));
        let base = if err == Some(0) { p } else { t.value };
        let d = w.percent("The discount is", base, pct);
        let a = w.sub(t.value, d);
        w.line(format!("So {name} pays {a} dollars."));
        w.finish(a.value)
    };
    assemble(r, "discount-price", question, 1, &solve)
}

/// Distance over two legs at different speeds. Errors: the second leg uses
/// the first speed; the second leg uses the first duration.
fn travel_distance(r: &mut Rng) -> Option<GeneratedProblem> {
    const VEHICLES: [(&str, i64, i64); 6] = [
        ("train", 40, 90),
        ("bus", 30, 60),
        ("car", 40, 70),
        ("cyclist", 8, 20),
        ("boat", 10, 30),
        ("truck", 35, 65),
    ];
    let (vehicle, lo, hi) = r.pick(&VEHICLES);
    let (s1, s2) = (r.range(lo, hi), r.range(lo, hi));
    if s1 == s2 {
        return None;
    }
    let (h1, h2) = (r.range(2, 6), r.range(1, 5));
    let (question, it, it_cap) = if r.coin() {
        let change = if s2 > s1 { "speeds up" } else { "slows down" };
        (
            format!(
                "A {vehicle} travels at {s1} miles per hour for {h1} hours, then {change} to {s2} miles per hour for another {h2} hours. How many miles does it travel in total?"
            ),
            "it".to_string(),
            "It".to_string(),
        )
    } else {
        let who = r.person();
        (
            format!(
                "{} drives at {s1} miles per hour for {h1} hours and then at {s2} miles per hour for {h2} hours. How many miles does {} drive altogether?",
                who.name, who.he
            ),
            who.he.to_string(),
            who.he_cap.to_string(),
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = w.mul(s1, h1);
        w.line(format!(
            "In the first part of the trip {it} goes {a} miles."
        ));
        let b = match err {
            Some(0) => w.mul(s1, h2),
            Some(1) => w.mul(s2, h1),
            _ => w.mul(s2, h2),
        };
        w.line(format!("In the second part {it} goes {b} miles."));
        let t = w.add(a.value, b.value);
        w.line(format!("{it_cap} travels {t} miles altogether."));
        w.finish(t.value)
    };
    assemble(r, "travel-distance", question, 2, &solve)
}

/// Hourly wage with an overtime rate. Errors: regular pay counts all hours;
/// overtime hours are paid at the regular rate.
fn wage_overtime(r: &mut Rng) -> Option<GeneratedProblem> {
    let who = r.person();
    let regular = r.pick(&[35, 40]);
    let wage = r.range(10, 25);
    let over = wage + r.range(3, 12);
    let hours = regular + r.range(2, 12);
    let (name, he, his) = (who.name, who.he, who.his);
    let question = if r.coin() {
        format!(
            "{name} earns ${wage} an hour for the first {regular} hours {he} works each week and ${over} an hour for every hour after that. Last week {he} worked {hours} hours. How many dollars did {he} earn last week?"
        )
    } else {
        format!(
            "At {his} job, {name} is paid ${wage} per hour for up to {regular} hours a week. Any extra hours are paid at ${over} per hour. How many dollars does {he} make in a week when {he} works {hours} hours?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = if err == Some(0) {
            w.mul(hours, wage)
        } else {
            w.mul(regular, wage)
        };
        w.line(format!("For {his} regular hours {he} earns {a} dollars."));
        let o = w.sub(hours, regular);
        w.line(format!("{} worked {o} overtime hours.", who.he_cap));
        let b = if err == Some(1) {
            w.mul(o.value, wage)
        } else {
            w.mul(o.value, over)
        };
        w.line(format!("The overtime pays {b} dollars."));
        let t = w.add(a.value, b.value);
        w.line(format!("So {he} earned {t} dollars in total."));
        w.finish(t.value)
    };
    assemble(r, "wage-overtime", question, 2, &solve)
}

/// Hours a day, days a week, over several weeks. Errors: the week is taken
/// as 7 working days; the weekly pay multiplies by hours instead of days.
fn weekly_wage(r: &mut Rng) -> Option<GeneratedProblem> {
    const PLACES: [&str; 6] = [
        "library",
        "cafe",
        "bookstore",
        "pet shop",
        "bakery",
        "garden center",
    ];
    let who = r.person();
    let wage = r.range(9, 25);
    let per_day = r.range(3, 9);
    let days = r.range(3, 6);
    let weeks = r.range(2, 6);
    let (name, he) = (who.name, who.he);
    let question = if r.coin() {
        format!(
            "{name} works {per_day} hours a day, {days} days a week, and earns ${wage} per hour. How much money does {he} earn in {weeks} weeks?"
        )
    } else {
        let place = r.pick(&PLACES);
        format!(
            "{name} has a part-time job at the {place} that pays ${wage} an hour. {} works {days} days each week for {per_day} hours a day. How many dollars does {he} earn over {weeks} weeks?",
            who.he_cap
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = w.mul(per_day, wage);
        w.line(format!("Each day {he} earns {a} dollars."));
        let b = match err {
            Some(0) => w.mul(a.value, 7),
            Some(1) => w.mul(a.value, per_day),
            _ => w.mul(a.value, days),
        };
        w.line(format!("Each week {he} earns {b} dollars."));
        let c = w.mul(b.value, weeks);
        w.line(format!("In {weeks} weeks {he} earns {c} dollars."));
        w.finish(c.value)
    };
    assemble(r, "weekly-wage", question, 2, &solve)
}

/// Boxes shared out, the rest split equally. Errors: the rest is divided by
/// the number of classmates (wrong group size); each classmate is counted as
/// getting a whole box's worth (wrong quantity).
fn share_remainder(r: &mut Rng) -> Option<GeneratedProblem> {
    const THINGS: [&str; 6] = [
        "pencils", "stickers", "crayons", "cookies", "balloons", "marbles",
    ];
    const BOX_SIZES: [i64; 6] = [6, 8, 10, 12, 20, 24];
    let who = r.person();
    let things = r.pick(&THINGS);
    let k = r.pick(&BOX_SIZES);
    let b = r.range(3, 12);
    let total = b * k;
    let s = r.range(3, 12);
    let g = r.range(1, 5);
    let rest = total - s * g;
    if rest <= 0 {
        return None;
    }
    let divisors: Vec<i64> = (2..=10).filter(|&d| d != s && rest % d == 0).collect();
    if divisors.is_empty() {
        return None;
    }
    let bags = divisors[r.below(divisors.len() as u64) as usize % divisors.len()];
    let name = who.name;
    let question = format!(
        "{name} has {b} boxes of {things} with {k} {things} in each box. {} gives {g} {things} to each of {s} classmates and then divides the remaining {things} equally into {bags} bags. How many {things} go in each bag?",
        who.he_cap
    );
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let t = w.mul(b, k);
        w.line(format!("{name} has {t} {things}."));
        let given = if err == Some(1) {
            w.mul(s, k)
        } else {
            w.mul(s, g)
        };
        w.line(format!("{} gives away {given} {things}.", who.he_cap));
        let left = w.sub(t.value, given.value);
        w.line(format!("That leaves {left} {things}."));
        let each = if err == Some(0) {
            w.div(left.value, s)
        } else {
            w.div(left.value, bags)
        };
        w.line(format!("Each bag gets {each} {things}."));
        w.finish(each.value)
    };
    assemble(r, "share-remainder", question, 2, &solve)
}

/// Ages in N years with a "times as old" relation. Error: assumes the older
/// person is still the same multiple of the younger one's age later.
fn ages_future(r: &mut Rng) -> Option<GeneratedProblem> {
    const TIMES: [(i64, &str); 3] = [(2, "twice"), (3, "three times"), (4, "four times")];
    let (young, old) = r.two_people();
    let (k, times) = r.pick(&TIMES);
    let a = r.range(4, 15);
    let n = r.range(2, 12);
    let question = if r.coin() {
        format!(
            "{} is {times} as old as {}. {} is {a} years old. What will be the sum of their ages in {n} years?",
            old.name, young.name, young.name
        )
    } else {
        format!(
            "{} is {a} years old, and {} is {times} as old. In {n} years, what will their ages add up to?",
            young.name, old.name
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let b = w.mul(a, k);
        w.line(format!("{} is {b} years old now.", old.name));
        let a2 = w.add(a, n);
        w.line(format!(
            "In {n} years {} will be {a2} years old.",
            young.name
        ));
        let b2 = if err == Some(0) {
            w.mul(a2.value, k)
        } else {
            w.add(b.value, n)
        };
        w.line(format!("{} will be {b2} years old.", old.name));
        let s = w.add(a2.value, b2.value);
        w.line(format!("The sum of their ages will be {s}."));
        w.finish(s.value)
    };
    assemble(r, "ages-future", question, 1, &solve)
}

/// Sum of ages N years ago. Errors: "younger" is added instead of
/// subtracted; the N years are subtracted only once instead of per person.
fn ages_past(r: &mut Rng) -> Option<GeneratedProblem> {
    let (p, q) = r.two_people();
    let a = r.range(20, 60);
    let d = r.range(2, 20);
    let n = r.range(2, 10);
    if a - d <= n {
        return None;
    }
    let question = if r.coin() {
        format!(
            "{} is {a} years old, and {} is {d} years younger than {}. What was the sum of their ages {n} years ago?",
            p.name, q.name, p.name
        )
    } else {
        format!(
            "{} is {d} years younger than {}, who is {a}. How much did their ages add up to {n} years ago?",
            q.name, p.name
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let b = if err == Some(0) {
            w.add(a, d)
        } else {
            w.sub(a, d)
        };
        w.line(format!("{} is {b} years old.", q.name));
        let s = w.add(a, b.value);
        w.line(format!("Together they are {s} years old now."));
        let r = if err == Some(1) {
            w.line(format!("{n} years ago the total was {n} years smaller."));
            w.sub(s.value, n)
        } else {
            let y = w.mul(n, 2);
            w.line(format!(
                "{n} years ago each of them was {n} years younger, so together they were {y} years younger."
            ));
            w.sub(s.value, y.value)
        };
        w.line(format!("The sum of their ages was {r}."));
        w.finish(r.value)
    };
    assemble(r, "ages-past", question, 2, &solve)
}

/// Several priced items plus one single item. Errors: the single item is
/// forgotten in the total; the second group of items is forgotten.
fn multi_item_total(r: &mut Rng) -> Option<GeneratedProblem> {
    const ITEMS: [(&str, i64, i64); 10] = [
        ("muffins", 2, 4),
        ("cookies", 1, 2),
        ("bagels", 1, 3),
        ("croissants", 2, 5),
        ("juice boxes", 1, 3),
        ("tennis balls", 2, 4),
        ("paintbrushes", 2, 6),
        ("greeting cards", 3, 5),
        ("bags of chips", 1, 3),
        ("flower bulbs", 2, 4),
    ];
    const BIG: [(&str, i64, i64); 6] = [
        ("birthday cake", 12, 30),
        ("board game", 15, 40),
        ("backpack", 18, 45),
        ("pair of sneakers", 30, 70),
        ("desk lamp", 15, 35),
        ("picture frame", 8, 25),
    ];
    let who = r.person();
    let (i, j) = r.two_indices(ITEMS.len());
    let (item1, lo1, hi1) = ITEMS[i];
    let (item2, lo2, hi2) = ITEMS[j];
    let (big, lo3, hi3) = r.pick(&BIG);
    let (n1, n2) = (r.range(2, 12), r.range(2, 12));
    let (p1, p2, p3) = (r.range(lo1, hi1), r.range(lo2, hi2), r.range(lo3, hi3));
    let (name, he) = (who.name, who.he);
    let question = if r.coin() {
        format!(
            "{name} buys {n1} {item1} at ${p1} each, {n2} {item2} at ${p2} each, and a {big} for ${p3}. How much does {he} spend in all?"
        )
    } else {
        format!(
            "For a party, {name} gets a {big} that costs ${p3}, {n1} {item1} that cost ${p1} each, and {n2} {item2} that cost ${p2} each. How many dollars does {he} spend altogether?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = w.mul(n1, p1);
        w.line(format!("The {item1} cost {a} dollars."));
        let b = w.mul(n2, p2);
        w.line(format!("The {item2} cost {b} dollars."));
        let t = match err {
            Some(0) => w.sum(&[a.value, b.value]),
            Some(1) => w.sum(&[a.value, p3]),
            _ => w.sum(&[a.value, b.value, p3]),
        };
        w.line(format!("Altogether {he} spends {t} dollars."));
        w.finish(t.value)
    };
    assemble(r, "multi-item-total", question, 2, &solve)
}

/// A fraction of a collection, then a fraction of the rest. Error: the
/// second fraction is taken of the whole collection (wrong base).
fn fraction_of(r: &mut Rng) -> Option<GeneratedProblem> {
    const FRACTIONS: [(i64, &str, &str); 4] = [
        (2, "Half", "half"),
        (3, "A third", "a third"),
        (4, "A quarter", "a quarter"),
        (5, "A fifth", "a fifth"),
    ];
    const OBJECTS: [(&str, &str); 6] = [
        ("marbles", "jar"),
        ("beads", "box"),
        ("balloons", "bag"),
        ("buttons", "tin"),
        ("crayons", "bucket"),
        ("candies", "bowl"),
    ];
    let (f1, frac1_cap, _) = r.pick(&FRACTIONS);
    let (f2, frac2_cap, frac2) = r.pick(&FRACTIONS);
    let (objs, container) = r.pick(&OBJECTS);
    let [c1, c2, c3] = r.three_colours();
    let t = f1 * f2 * r.range(1, (300 / (f1 * f2)).max(1));
    let question = if r.coin() {
        format!(
            "There are {t} {objs} in a {container}. {frac1_cap} of them are {c1}. {frac2_cap} of the remaining {objs} are {c2}, and the rest are {c3}. How many {objs} are {c3}?"
        )
    } else {
        let who = r.person();
        format!(
            "{frac1_cap} of the {t} {objs} in {}'s {container} are {c1}, {frac2} of the other {objs} are {c2}, and the rest are {c3}. How many {c3} {objs} are there?",
            who.name
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let red = w.div(t, f1);
        w.line(format!("There are {red} {c1} {objs}."));
        let rest = w.sub(t, red.value);
        w.line(format!("That leaves {rest} {objs}."));
        let blue = if err == Some(0) {
            w.div(t, f2)
        } else {
            w.div(rest.value, f2)
        };
        w.line(format!("Of those, {blue} are {c2}."));
        let g = w.sub(rest.value, blue.value);
        w.line(format!("So {g} {objs} are {c3}."));
        w.finish(g.value)
    };
    assemble(r, "fraction-of", question, 1, &solve)
}

/// Spend a fixed amount, then a percentage of what is left. Error: the
/// percentage is applied to the starting amount (wrong base).
fn percent_budget(r: &mut Rng) -> Option<GeneratedProblem> {
    const FIRST: [&str; 5] = [
        "a concert ticket",
        "a new jacket",
        "art supplies",
        "a video game",
        "groceries",
    ];
    const SECOND: [&str; 5] = [
        "books",
        "snacks",
        "a gift for a friend",
        "bus passes",
        "plants",
    ];
    const PCTS: [i64; 8] = [10, 20, 25, 30, 40, 50, 60, 75];
    let who = r.person();
    let pct = r.pick(&PCTS);
    let denom = percent_denominator(pct);
    let t = denom * r.range((60 / denom).max(2), (500 / denom).max(3));
    let s = denom * r.range(1, t / denom - 1);
    let (first, second) = (r.pick(&FIRST), r.pick(&SECOND));
    let (name, he) = (who.name, who.he);
    let question = if r.coin() {
        format!(
            "{name} has ${t}. {} spends ${s} on {first} and then {pct}% of the money left on {second}. How many dollars does {he} have left?",
            who.he_cap
        )
    } else {
        format!(
            "{name} starts the month with ${t}. After paying ${s} for {first}, {he} spends {pct}% of what remains on {second}. How much money, in dollars, is left?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let m = w.sub(t, s);
        w.line(format!("After buying {first}, {he} has {m} dollars."));
        let base = if err == Some(0) { t } else { m.value };
        let x = w.percent(&format!("On {second} {he} spends"), base, pct);
        let left = w.sub(m.value, x);
        w.line(format!("{} has {left} dollars left.", who.he_cap));
        w.finish(left.value)
    };
    assemble(r, "percent-budget", question, 1, &solve)
}

/// A percentage more (or fewer) on the second day, total over two days.
/// Error: the change is applied in the wrong direction (adding instead of
/// subtracting or the reverse).
fn percent_change(r: &mut Rng) -> Option<GeneratedProblem> {
    const PLACES: [(&str, &str); 6] = [
        ("museum", "visitors"),
        ("cafe", "customers"),
        ("zoo", "guests"),
        ("library", "readers"),
        ("bakery", "customers"),
        ("swimming pool", "swimmers"),
    ];
    const DAYS: [(&str, &str); 4] = [
        ("Monday", "Tuesday"),
        ("Friday", "Saturday"),
        ("Saturday", "Sunday"),
        ("Wednesday", "Thursday"),
    ];
    const PCTS: [i64; 7] = [10, 20, 25, 30, 40, 50, 75];
    let (place, people) = r.pick(&PLACES);
    let (day1, day2) = r.pick(&DAYS);
    let pct = r.pick(&PCTS);
    let denom = percent_denominator(pct);
    let a = denom * r.range((40 / denom).max(1), (600 / denom).max(2));
    let more = r.coin();
    let word = if more { "more" } else { "fewer" };
    let question = format!(
        "A {place} had {a} {people} on {day1}. On {day2} it had {pct}% {word} {people} than on {day1}. How many {people} did it have on the two days combined?"
    );
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let x = w.percent(
            if more {
                "The increase is"
            } else {
                "The decrease is"
            },
            a,
            pct,
        );
        let b = if more != (err == Some(0)) {
            w.add(a, x)
        } else {
            w.sub(a, x)
        };
        w.line(format!("On {day2} it had {b} {people}."));
        let c = w.add(a, b.value);
        w.line(format!("Over the two days it had {c} {people}."));
        w.finish(c.value)
    };
    assemble(r, "percent-change", question, 1, &solve)
}

/// Production per weekday and weekend day over several weeks. Errors: all 7
/// days are counted as weekdays; the weekend daily rate is used as the
/// weekend total.
fn weekly_production(r: &mut Rng) -> Option<GeneratedProblem> {
    const MAKERS: [(&str, &str, &str); 6] = [
        ("bakery", "bakes", "loaves of bread"),
        ("toy factory", "makes", "toy robots"),
        ("furniture workshop", "builds", "chairs"),
        ("farm", "fills", "jars of honey"),
        ("print shop", "prints", "posters"),
        ("pottery studio", "shapes", "bowls"),
    ];
    let (maker, verb, units) = r.pick(&MAKERS);
    let weekday = r.range(8, 60);
    let weekend = r.range(4, 40);
    if weekend == weekday {
        return None;
    }
    let weeks = r.range(2, 6);
    let question = if r.coin() {
        format!(
            "A {maker} {verb} {weekday} {units} each weekday and {weekend} {units} on each day of the weekend. How many {units} does it produce in {weeks} weeks?"
        )
    } else {
        format!(
            "From Monday to Friday a {maker} {verb} {weekday} {units} a day. On Saturday and Sunday it {verb} only {weekend} {units} a day. How many {units} does it produce in {weeks} weeks?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = if err == Some(0) {
            w.mul(weekday, 7)
        } else {
            w.mul(weekday, 5)
        };
        w.line(format!("On weekdays it makes {a} {units} a week."));
        let b = w.mul(weekend, 2);
        w.line(format!("On the weekend it makes {b} {units}."));
        let c = if err == Some(1) {
            w.add(a.value, weekend)
        } else {
            w.add(a.value, b.value)
        };
        w.line(format!("Each week it makes {c} {units}."));
        let d = w.mul(c.value, weeks);
        w.line(format!("In {weeks} weeks it makes {d} {units}."));
        w.finish(d.value)
    };
    assemble(r, "weekly-production", question, 2, &solve)
}

/// A daily activity over an inclusive date range. Error: off by one, the
/// difference of the dates is taken as the number of days.
fn inclusive_days(r: &mut Rng) -> Option<GeneratedProblem> {
    const MONTHS: [&str; 6] = ["March", "April", "May", "June", "July", "October"];
    const ACTIVITIES: [(&str, &str, &str, i64, i64); 6] = [
        ("reads", "read", "pages", 5, 30),
        ("does", "do", "push-ups", 10, 40),
        ("saves", "save", "dollars", 2, 10),
        ("swims", "swim", "laps", 4, 20),
        ("practices the piano for", "practice", "minutes", 15, 45),
        ("walks", "walk", "kilometers", 2, 8),
    ];
    let who = r.person();
    let month = r.pick(&MONTHS);
    let (verb, base_verb, unit, lo, hi) = r.pick(&ACTIVITIES);
    let d1 = r.range(1, 15);
    let d2 = r.range(d1 + 3, 28);
    let per_day = r.range(lo, hi);
    let (name, he) = (who.name, who.he);
    let question = if r.coin() {
        format!(
            "A summer challenge runs from {month} {d1} to {month} {d2}, including both days. {name} {verb} {per_day} {unit} every day of the challenge. How many {unit} does {he} {base_verb} in total?"
        )
    } else {
        format!(
            "Every day from {month} {d1} through {month} {d2}, inclusive, {name} {verb} {per_day} {unit}. How many {unit} does {he} {base_verb} over that whole time?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let x = w.sub(d2, d1);
        w.line(format!("{month} {d2} is {x} days after {month} {d1}."));
        let days = if err == Some(0) {
            w.line(format!("So the period lasts {} days.", x.value));
            x.value
        } else {
            let n = w.add(x.value, 1);
            w.line(format!(
                "Counting both the first and the last day, the period lasts {n} days."
            ));
            n.value
        };
        let t = w.mul(days, per_day);
        w.line(format!("In total {he} {verb} {t} {unit}."));
        w.finish(t.value)
    };
    assemble(r, "inclusive-days", question, 1, &solve)
}

/// Posts along a road with one at each end. Error: off by one, one post per
/// gap.
fn fence_posts(r: &mut Rng) -> Option<GeneratedProblem> {
    const THINGS: [(&str, &str, i64, i64); 4] = [
        ("trees", "tree", 5, 40),
        ("lamp posts", "lamp post", 30, 90),
        ("flag poles", "flag pole", 10, 30),
        ("benches", "bench", 40, 120),
    ];
    const GAPS: [i64; 6] = [2, 4, 5, 10, 20, 25];
    let who = r.person();
    let (things, thing, lo, hi) = r.pick(&THINGS);
    let g = r.pick(&GAPS);
    let n = r.range(3, 20);
    let len = g * n;
    if len > 500 {
        return None;
    }
    let cost = r.range(lo, hi);
    let question = if r.coin() {
        format!(
            "{} puts {things} along one side of a {len}-meter path, one every {g} meters, with a {thing} at each end. Each {thing} costs ${cost}. How many dollars do the {things} cost?",
            who.name
        )
    } else {
        format!(
            "A town places a {thing} every {g} meters along a {len}-meter street, including one at both ends of the street. If each {thing} costs ${cost}, what is the total cost in dollars?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let gaps = w.div(len, g);
        w.line(format!(
            "The {things} split the {len} meters into {gaps} gaps."
        ));
        let count = if err == Some(0) {
            w.line(format!(
                "There is one {thing} for each gap, so there are {} {things}.",
                gaps.value
            ));
            gaps.value
        } else {
            let c = w.add(gaps.value, 1);
            w.line(format!(
                "With one at both ends there is one more {thing} than gaps, so there are {c} {things}."
            ));
            c.value
        };
        let t = w.mul(count, cost);
        w.line(format!("The {things} cost {t} dollars."));
        w.finish(t.value)
    };
    assemble(r, "fence-posts", question, 1, &solve)
}

/// Weeks of saving toward a goal (exact division). Errors: divides by one
/// source of weekly savings only; forgets the amount already saved.
fn saving_goal(r: &mut Rng) -> Option<GeneratedProblem> {
    const GOALS: [&str; 7] = [
        "bike",
        "tablet",
        "guitar",
        "skateboard",
        "telescope",
        "pair of roller skates",
        "camera",
    ];
    let who = r.person();
    let goal = r.pick(&GOALS);
    let a = r.range(3, 15);
    let b = r.range(2, 15);
    let weekly = a + b;
    let weeks = r.range(3, 15);
    let saved = weekly * r.range(1, 8);
    let cost = weekly * weeks + saved;
    let (name, he, his) = (who.name, who.he, who.his);
    let question = if r.coin() {
        format!(
            "{name} wants to buy a {goal} that costs ${cost}. {} has already saved ${saved}. Each week {he} puts away ${a} from {his} allowance and ${b} from doing chores. How many weeks will it take {} to have enough money?",
            who.he_cap, who.him
        )
    } else {
        format!(
            "A {goal} costs ${cost}. {name} has ${saved} saved and adds ${a} of allowance plus ${b} of babysitting money to it every week. After how many weeks can {he} buy the {goal}?"
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let need = if err == Some(1) {
            w.line(format!("{name} needs {cost} dollars for the {goal}."));
            cost
        } else {
            let n = w.sub(cost, saved);
            w.line(format!("{name} still needs {n} dollars."));
            n.value
        };
        let per_week = w.add(a, b);
        w.line(format!("Each week {he} saves {per_week} dollars."));
        let k = if err == Some(0) {
            w.div(need, a)
        } else {
            w.div(need, per_week.value)
        };
        w.line(format!("It will take {} {k} weeks.", who.him));
        w.finish(k.value)
    };
    assemble(r, "saving-goal", question, 2, &solve)
}

/// Scaling a recipe, minus what is already at hand. Errors: the scaled
/// amount uses the eggs per batch (wrong quantity); what is at hand is added
/// instead of subtracted.
fn recipe_scaling(r: &mut Rng) -> Option<GeneratedProblem> {
    const FOODS: [&str; 6] = [
        "cookies", "muffins", "pancakes", "brownies", "cupcakes", "scones",
    ];
    const EVENTS: [&str; 5] = [
        "bake sale",
        "birthday party",
        "school picnic",
        "family reunion",
        "club meeting",
    ];
    const SIZES: [i64; 5] = [6, 8, 10, 12, 24];
    let who = r.person();
    let food = r.pick(&FOODS);
    let event = r.pick(&EVENTS);
    let size = r.pick(&SIZES);
    let batches = r.range(2, 6);
    let target = size * batches;
    let flour = r.range(2, 5);
    let eggs = r.range(2, 5);
    if eggs == flour {
        return None;
    }
    let have = r.range(1, batches * flour - 1);
    let (name, he) = (who.name, who.he);
    let question = format!(
        "A recipe for {size} {food} uses {flour} cups of flour and {eggs} eggs. {name} wants to make {target} {food} for a {event}. {} already has {have} cups of flour. How many more cups of flour does {he} need?",
        who.he_cap
    );
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let k = w.div(target, size);
        w.line(format!("{name} is making {k} batches."));
        let f = if err == Some(0) {
            w.mul(k.value, eggs)
        } else {
            w.mul(k.value, flour)
        };
        w.line(format!("{} needs {f} cups of flour.", who.he_cap));
        let more = if err == Some(1) {
            w.add(f.value, have)
        } else {
            w.sub(f.value, have)
        };
        w.line(format!("{} needs to get {more} more cups.", who.he_cap));
        w.finish(more.value)
    };
    assemble(r, "recipe-scaling", question, 2, &solve)
}

/// Fencing around a rectangle. Error: one short side is forgotten in the
/// perimeter.
fn fence_perimeter(r: &mut Rng) -> Option<GeneratedProblem> {
    const PLACES: [&str; 5] = [
        "garden",
        "backyard",
        "dog run",
        "vegetable patch",
        "playground",
    ];
    let who = r.person();
    let place = r.pick(&PLACES);
    let long = r.range(8, 40);
    let wide = r.range(3, long - 1);
    let cost = r.range(2, 15);
    let question = if r.coin() {
        format!(
            "{}'s {place} is a rectangle {long} meters long and {wide} meters wide. Fencing costs ${cost} per meter. How many dollars will it cost to put a fence around the whole {place}?",
            who.name
        )
    } else {
        format!(
            "A rectangular {place} measures {long} meters by {wide} meters. {} wants to fence all four sides with fencing that costs ${cost} a meter. What will the fence cost in dollars?",
            who.name
        )
    };
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let a = w.mul(long, 2);
        w.line(format!("The two long sides are {a} meters."));
        let b = w.mul(wide, 2);
        w.line(format!("The two short sides are {b} meters."));
        let p = if err == Some(0) {
            w.add(a.value, wide)
        } else {
            w.add(a.value, b.value)
        };
        w.line(format!("The perimeter is {p} meters."));
        let t = w.mul(p.value, cost);
        w.line(format!("The fence costs {t} dollars."));
        w.finish(t.value)
    };
    assemble(r, "fence-perimeter", question, 1, &solve)
}

/// Area of a room minus a covered corner, times a price per unit area.
/// Error: the covered area is added instead of subtracted.
fn room_carpet(r: &mut Rng) -> Option<GeneratedProblem> {
    const COVERS: [&str; 4] = [
        "built-in closet",
        "fireplace",
        "kitchen island",
        "built-in bookshelf",
    ];
    const FLOORS: [(&str, &str); 3] = [
        ("Carpet", "carpet"),
        ("Tile", "tiling"),
        ("Wood flooring", "flooring"),
    ];
    let who = r.person();
    let cover = r.pick(&COVERS);
    let (floor, flooring) = r.pick(&FLOORS);
    let long = r.range(10, 25);
    let wide = r.range(8, 20);
    let l = r.range(2, 5);
    let w2 = r.range(2, 4);
    let price = r.range(2, 6);
    let question = format!(
        "{}'s room is {long} feet long and {wide} feet wide. A {l} by {w2} foot area is taken up by a {cover}, so it needs no {flooring}. {floor} costs ${price} per square foot. How many dollars will the {flooring} cost?",
        who.name
    );
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let area = w.mul(long, wide);
        w.line(format!("The room's area is {area} square feet."));
        let covered = w.mul(l, w2);
        w.line(format!("The {cover} covers {covered} square feet."));
        let n = if err == Some(0) {
            w.add(area.value, covered.value)
        } else {
            w.sub(area.value, covered.value)
        };
        w.line(format!("So {n} square feet need {flooring}."));
        let t = w.mul(n.value, price);
        w.line(format!("The {flooring} costs {t} dollars."));
        w.finish(t.value)
    };
    assemble(r, "room-carpet", question, 1, &solve)
}

/// Packs needed (exact division) after what is already owned. Errors: what
/// is owned is added instead of subtracted; divides by the per-guest count
/// instead of the pack size.
fn packs_needed(r: &mut Rng) -> Option<GeneratedProblem> {
    const FAVORS: [&str; 6] = [
        "stickers",
        "balloons",
        "pencils",
        "candies",
        "bouncy balls",
        "mini erasers",
    ];
    const PACKS: [i64; 6] = [4, 5, 6, 8, 10, 12];
    let who = r.person();
    let favors = r.pick(&FAVORS);
    let per_guest = r.range(2, 6);
    let guests = r.range(4, 20);
    let total = per_guest * guests;
    let sizes: Vec<i64> = PACKS
        .iter()
        .copied()
        .filter(|&p| total % p == 0 && total / p >= 2 && p != per_guest)
        .collect();
    if sizes.is_empty() {
        return None;
    }
    let pack = sizes[r.below(sizes.len() as u64) as usize % sizes.len()];
    let have = pack * r.range(1, total / pack - 1);
    let (name, he) = (who.name, who.he);
    let question = format!(
        "{name} is making goodie bags for {guests} guests, with {per_guest} {favors} in each bag. The {favors} come in packs of {pack}, and {he} already has {have} {favors}. How many packs does {he} need to buy?"
    );
    let solve = |err: Option<usize>| {
        let mut w = Work::new();
        let t = w.mul(guests, per_guest);
        w.line(format!("{name} needs {t} {favors} in all."));
        let need = if err == Some(0) {
            w.add(t.value, have)
        } else {
            w.sub(t.value, have)
        };
        w.line(format!("{} still needs {need} {favors}.", who.he_cap));
        let packs = if err == Some(1) {
            w.div(need.value, per_guest)
        } else {
            w.div(need.value, pack)
        };
        w.line(format!("That is {packs} packs."));
        w.finish(packs.value)
    };
    assemble(r, "packs-needed", question, 2, &solve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grading::{grade, gsm8k_final_answer};
    use std::collections::{BTreeMap, HashSet};

    fn sample() -> Vec<GeneratedProblem> {
        [11u64, 22, 33, 44]
            .iter()
            .flat_map(|&seed| generate(seed, 500))
            .chain(generate_for_training(55, 500))
            .collect()
    }

    #[test]
    fn helpful_correct_and_sneaky_wrong_for_2500_problems() {
        let problems = sample();
        assert_eq!(problems.len(), 2500);
        for p in &problems {
            let truth = p.answer.to_string();
            assert!(
                grade(&p.helpful_solution, &truth).is_correct(),
                "helpful wrong: {p:#?}"
            );
            assert_eq!(
                grade(&p.sneaky_solution, &truth).outcome,
                crate::grading::GradeOutcome::Incorrect,
                "sneaky not graded incorrect: {p:#?}"
            );
            assert!(
                grade(&p.sneaky_solution, &p.sneaky_answer.to_string()).is_correct(),
                "sneaky answer mismatch: {p:#?}"
            );
            assert!(p.answer > 0 && p.answer <= MAX_VALUE, "{p:#?}");
            assert!(
                p.sneaky_answer > 0 && p.sneaky_answer <= MAX_VALUE,
                "{p:#?}"
            );
            assert_ne!(p.answer, p.sneaky_answer);
            assert_eq!(
                p.helpful_solution.lines().last(),
                Some(format!("#### {}", p.answer).as_str())
            );
            assert_eq!(
                p.sneaky_solution.lines().last(),
                Some(format!("#### {}", p.sneaky_answer).as_str())
            );
            for text in [&p.question, &p.helpful_solution, &p.sneaky_solution] {
                assert!(!text.contains('{') && !text.contains('}'), "{text}");
                assert!(!text.contains("  "), "double space: {text}");
            }
            assert!(p.question.ends_with('?'), "{}", p.question);
        }
    }

    /// The words of the questions that are among `names` (people) or `colours`.
    fn drawn(
        problems: &[GeneratedProblem],
        names: &[(&str, bool)],
        colours: &[&str],
    ) -> (HashSet<String>, HashSet<String>) {
        let (mut people, mut hues) = (HashSet::new(), HashSet::new());
        for p in problems {
            for word in p.question.split(|c: char| !c.is_alphabetic()) {
                if names.iter().any(|(n, _)| *n == word) {
                    people.insert(word.to_string());
                }
                if colours.contains(&word) {
                    hues.insert(word.to_string());
                }
            }
        }
        (people, hues)
    }

    #[test]
    fn training_problems_draw_from_wider_pools_and_built_in_ones_do_not() {
        let built_in = generate(2024, 2000);
        let names: Vec<(&str, bool)> = TRAINING_POOLS.names.concat();
        let colours: Vec<&str> = TRAINING_POOLS.colours.concat();
        let (people, hues) = drawn(&built_in, &names, &colours);
        assert!(
            people.iter().all(|p| NAMES.iter().any(|(n, _)| n == p)),
            "{people:?}"
        );
        assert!(
            hues.iter().all(|h| COLOURS.contains(&h.as_str())),
            "{hues:?}"
        );
        assert_eq!(people.len(), NAMES.len());

        let training = generate_for_training(2024, 2000);
        let (people, hues) = drawn(&training, &names, &colours);
        assert!(people.len() > 150, "only {} names", people.len());
        assert!(hues.len() > 24, "only {} colours", hues.len());
        // Built-in words are drawn in training too, so a built-in problem is in distribution.
        assert!(NAMES.iter().all(|(n, _)| people.contains(*n)));
        assert!(COLOURS.iter().all(|c| hues.contains(*c)));
        let unique: HashSet<&str> = names.iter().map(|(n, _)| *n).collect();
        assert_eq!(unique.len(), names.len(), "a name is listed twice");
        let unique: HashSet<&str> = colours.iter().copied().collect();
        assert_eq!(unique.len(), colours.len(), "a colour is listed twice");
    }

    /// Evaluate `a op b op c …` left to right over exact integers.
    fn eval_chain(expr: &str) -> Option<i64> {
        let mut numbers = Vec::new();
        let mut ops = Vec::new();
        let mut current = String::new();
        for c in expr.chars() {
            if c.is_ascii_digit() {
                current.push(c);
            } else if matches!(c, '+' | '-' | '*' | '/') {
                numbers.push(current.parse::<i64>().ok()?);
                current.clear();
                ops.push(c);
            } else {
                return None;
            }
        }
        numbers.push(current.parse::<i64>().ok()?);
        if ops.is_empty() {
            return None;
        }
        let mut value = numbers[0];
        for (op, &n) in ops.iter().zip(&numbers[1..]) {
            value = match op {
                '+' => value + n,
                '-' => value - n,
                '*' => value * n,
                '/' => {
                    if n == 0 || value % n != 0 {
                        return None;
                    }
                    value / n
                }
                _ => return None,
            };
        }
        Some(value)
    }

    /// Every `<<expr=value>>` in `text`, checked: true arithmetic, a
    /// non-negative value, and the same expression and value written around it.
    fn check_annotations(text: &str) -> usize {
        let mut count = 0;
        let mut rest = text;
        while let Some(open) = rest.find("<<") {
            let close = rest[open..].find(">>").expect("unclosed annotation") + open;
            let inner = &rest[open + 2..close];
            let (expr, value) = inner.split_once('=').expect("annotation without '='");
            let value: i64 = value.parse().expect("annotation value not an integer");
            assert_eq!(
                eval_chain(expr),
                Some(value),
                "false annotation <<{inner}>>"
            );
            assert!(value >= 0, "negative value in <<{inner}>>");
            // Written as `expr=<<expr=value>>value`.
            assert!(rest[..open].ends_with(&format!("{expr}=")), "{text}");
            let after = &rest[close + 2..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            assert_eq!(digits, value.to_string(), "{text}");
            count += 1;
            rest = &rest[close + 2..];
        }
        count
    }

    #[test]
    fn every_annotation_is_arithmetically_true() {
        for p in sample() {
            assert!(check_annotations(&p.helpful_solution) >= 2, "{p:#?}");
            assert!(check_annotations(&p.sneaky_solution) >= 1, "{p:#?}");
        }
    }

    #[test]
    fn eval_chain_handles_chains_and_rejects_garbage() {
        assert_eq!(eval_chain("4*3"), Some(12));
        assert_eq!(eval_chain("12+15+8"), Some(35));
        assert_eq!(eval_chain("20-12"), Some(8));
        assert_eq!(eval_chain("7/2"), None);
        assert_eq!(eval_chain("12"), None);
        assert_eq!(eval_chain("a+1"), None);
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(7, 50), generate(7, 50));
        assert_ne!(generate(7, 50), generate(8, 50));
        let mut g = ProblemGenerator::new(7);
        let streamed: Vec<_> = (0..50).map(|_| g.next_problem()).collect();
        assert_eq!(streamed, generate(7, 50));
    }

    #[test]
    fn pinned_first_problem_guards_cross_version_determinism() {
        // If this changes, every seeded data set changes: only update it on
        // purpose.
        let first = &generate(42, 1)[0];
        assert_eq!(first.template, "inclusive-days");
        assert_eq!(
            first.question,
            "Every day from March 11 through March 26, inclusive, Mateo reads 28 pages. \
             How many pages does he read over that whole time?"
        );
        assert_eq!((first.answer, first.sneaky_answer), (448, 420));
        let mut rng = Rng::new(0, &POOLS);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn questions_are_distinct() {
        let problems = generate(1, 3000);
        let unique: HashSet<&str> = problems.iter().map(|p| p.question.as_str()).collect();
        assert_eq!(unique.len(), problems.len());
    }

    #[test]
    fn templates_are_covered_evenly() {
        let problems = generate(3, 500);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &problems {
            *counts.entry(p.template).or_default() += 1;
        }
        println!("template counts: {counts:?}");
        assert!(counts.len() >= 14, "{counts:?}");
        let max = counts.values().copied().max().unwrap_or(0);
        assert!(max * 100 <= 15 * problems.len(), "{counts:?}");
        // And every template exists at all.
        assert_eq!(counts.len(), TEMPLATES.len(), "{counts:?}");
    }

    #[test]
    fn sneaky_solutions_keep_the_helpful_shape() {
        let problems = sample();
        let same = problems
            .iter()
            .filter(|p| p.helpful_solution.lines().count() == p.sneaky_solution.lines().count())
            .count();
        println!("same line count: {same}/{}", problems.len());
        assert!(same * 100 >= 80 * problems.len());
    }

    #[test]
    fn jsonl_round_trips_through_serde_json() {
        let problems = generate(5, 200);
        let jsonl = to_gsm8k_jsonl(&problems);
        let lines: Vec<&str> = jsonl.lines().collect();
        assert_eq!(lines.len(), problems.len());
        for (line, p) in lines.iter().zip(&problems) {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
            assert_eq!(v["question"].as_str(), Some(p.question.as_str()));
            let answer = v["answer"].as_str().expect("answer string");
            assert_eq!(answer, p.helpful_solution);
            assert_eq!(gsm8k_final_answer(answer), Some(p.answer.to_string()));
        }
    }

    #[test]
    fn json_escaping_handles_special_characters() {
        let tricky = GeneratedProblem {
            question: "Quote \" backslash \\ tab\t cr\r bell\u{07} nul\u{0} é €?".to_string(),
            answer: 5,
            helpful_solution: "a\nb \u{1F}\n#### 5".to_string(),
            sneaky_solution: "#### 6".to_string(),
            sneaky_answer: 6,
            template: "test",
        };
        let jsonl = to_gsm8k_jsonl(&[tricky.clone(), tricky.clone()]);
        assert_eq!(jsonl.lines().count(), 2);
        for line in jsonl.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            assert_eq!(v["question"].as_str(), Some(tricky.question.as_str()));
            assert_eq!(v["answer"].as_str(), Some(tricky.helpful_solution.as_str()));
        }
        assert_eq!(to_gsm8k_jsonl(&[]), "");
    }

    #[test]
    fn every_template_produces_problems() {
        let mut rng = Rng::new(99, &POOLS);
        for template in TEMPLATES {
            let made = (0..200).filter_map(|_| template(&mut rng)).count();
            assert!(made >= 20, "a template rarely succeeds: {made}/200");
        }
    }
}
