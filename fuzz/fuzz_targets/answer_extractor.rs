//! Answer extraction and normalisation: never panic; an extracted answer is text of the
//! solution; numbers are reduced fractions with a positive denominator; matching is
//! reflexive and symmetric.
#![no_main]

use legibility::grading::{
    NormalAnswer, answers_match, extract_final_answer, grade, gsm8k_final_answer, normalise_answer,
};
use libfuzzer_sys::fuzz_target;

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn check_normal(raw: &str) {
    if let Some(NormalAnswer::Number {
        numerator,
        denominator,
    }) = normalise_answer(raw)
    {
        assert!(denominator > 0, "{raw:?}: denominator {denominator}");
        assert_eq!(
            gcd(numerator.unsigned_abs(), denominator.unsigned_abs()),
            1,
            "{raw:?}: {numerator}/{denominator} is not reduced"
        );
    }
    assert_eq!(
        answers_match(raw, raw),
        normalise_answer(raw).is_some(),
        "{raw:?} does not match itself"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(answer) = extract_final_answer(text) {
        assert!(
            text.contains(answer.as_str()),
            "{answer:?} is not in the solution"
        );
        check_normal(&answer);
    }
    if let Some(truth) = gsm8k_final_answer(text) {
        assert!(text.contains(truth.as_str()));
    }
    check_normal(text);
    // What raters see of a solution only ever loses calculator markup.
    assert!(legibility::problems::for_raters(text).len() <= text.len());
    // Split at a character boundary picked by the first byte, to compare two answers.
    let at = (data.first().copied().unwrap_or(0) as usize).min(text.len());
    let at = (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let (a, b) = text.split_at(at);
    assert_eq!(answers_match(a, b), answers_match(b, a), "{a:?} vs {b:?}");
    let graded = grade(a, b);
    assert_eq!(graded.extracted_answer, extract_final_answer(a));
});
