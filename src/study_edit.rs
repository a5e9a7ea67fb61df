//! Editing and duplicating a study: which settings may change once raters have been served
//! items, and the name a copy gets. Plain functions; the store applies them inside its write
//! transaction and the pages use them to show frozen settings read-only with the reason.
//!
//! The rule: a setting that shapes data already collected never changes under it. Name, the
//! workload cap and the break interval shape only what happens next, so they change at any
//! time (and opening or closing is its own action). The time limit, the judgements per
//! solution, the problems, provers and roles, and the practice, screening and gold items decide
//! what every judgement means, so they change only while the study has served no item (study or
//! quality item) and holds no judgement. A study whose solutions a generation job writes keeps
//! its problems, provers and roles as the job was asked. To run a study again with other
//! settings, duplicate it.

use std::collections::{BTreeSet, HashSet};

use crate::store::studies::StudySpec;

/// What a study has collected, as far as editing is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Study items served, whatever became of them (answered, timed out, abandoned, open).
    pub items_served: i64,
    /// Judgements stored.
    pub judgements: i64,
    /// Practice, screening and gold items served.
    pub quality_items_served: i64,
}

impl Collected {
    /// Whether anything at all has been collected.
    pub fn any(&self) -> bool {
        self.items_served > 0 || self.judgements > 0 || self.quality_items_served > 0
    }
}

/// Why the time limit, judgements per solution and quality items can no longer change; `None`
/// while they can.
pub fn design_frozen(collected: &Collected) -> Option<String> {
    collected.any().then(|| {
        format!(
            "raters have been served {} study items and {} practice, screening or gold items, \
             and {} judgements are stored: changing how items are judged would change data \
             already collected. Duplicate the study to run it with other settings.",
            collected.items_served, collected.quality_items_served, collected.judgements
        )
    })
}

/// Why the problems, provers and roles can no longer change; `None` while they can.
pub fn selection_frozen(collected: &Collected, generated: bool) -> Option<String> {
    design_frozen(collected).or_else(|| {
        generated.then(|| {
            "a generation job writes this study's solutions from the problems, provers and roles \
             it was asked for. Duplicate the study to generate others."
                .to_string()
        })
    })
}

/// What an accepted edit changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditPlan {
    /// The settings that change, in the form's words (empty: nothing to do).
    pub changed: Vec<&'static str>,
    /// Whether the study's solutions and quality items are chosen again (the selection or the
    /// number of quality items changed).
    pub reselect: bool,
    /// Whether any frozen-once-collected setting changes; the store re-checks that nothing has
    /// been collected inside its write transaction.
    pub design_changed: bool,
}

/// Floats from a form round trip (percent → share, hours → ms) compare within this.
const FLOAT_SLACK: f64 = 1e-9;

fn differs(a: f64, b: f64) -> bool {
    (a - b).abs() > FLOAT_SLACK
}

fn as_set<T: Ord + Copy>(items: &[T]) -> BTreeSet<T> {
    items.iter().copied().collect()
}

/// Checks an edit of a study from `current` to `wanted` settings and says what it changes;
/// refuses, naming the setting and the reason, a change the rule above forbids, and values
/// that cannot work. `reclaim_grace_ms` is not editable and is ignored.
pub fn plan_edit(
    current: &StudySpec,
    wanted: &StudySpec,
    collected: &Collected,
    generated: bool,
) -> Result<EditPlan, String> {
    if wanted.name.trim().is_empty() {
        return Err("the study needs a name".into());
    }
    if wanted.time_limit_ms <= 0 || wanted.judgements_per_solution <= 0 {
        return Err("time limit and judgements per solution must be positive".into());
    }
    wanted.protocol.check()?;
    wanted.time_limits.check(
        wanted.max_problems.map_or(i64::MAX, |n| n as i64),
        wanted.judgements_per_solution,
    )?;
    let (c, w) = (&current.protocol, &wanted.protocol);
    let mut plan = EditPlan::default();
    let mut free = |changed: bool, name: &'static str| {
        if changed {
            plan.changed.push(name);
        }
    };
    free(wanted.name.trim() != current.name, "name");
    free(w.max_rater_ms != c.max_rater_ms, "workload cap");
    free(w.break_every != c.break_every, "break interval");

    let quality_counts = w.practice_items != c.practice_items
        || w.screening_items != c.screening_items
        || w.gold_items != c.gold_items;
    let design: [(bool, &'static str); 9] = [
        (wanted.answers != current.answers, "answer format"),
        (wanted.time_limits != current.time_limits, "time-limit arms"),
        (wanted.time_limit_ms != current.time_limit_ms, "time limit"),
        (
            wanted.judgements_per_solution != current.judgements_per_solution,
            "judgements per solution",
        ),
        (w.practice_items != c.practice_items, "practice items"),
        (w.screening_items != c.screening_items, "screening items"),
        (
            differs(w.screening_pass_accuracy, c.screening_pass_accuracy),
            "screening pass mark",
        ),
        (w.gold_items != c.gold_items, "gold items"),
        (differs(w.gold_rate, c.gold_rate), "share of gold items"),
    ];
    let selection: [(bool, &'static str); 4] = [
        (
            wanted.problem_set_id != current.problem_set_id,
            "problem set",
        ),
        (
            as_set(&wanted.checkpoint_ids) != as_set(&current.checkpoint_ids),
            "prover checkpoints",
        ),
        (as_set(&wanted.roles) != as_set(&current.roles), "roles"),
        (wanted.max_problems != current.max_problems, "problems"),
    ];
    let frozen = design_frozen(collected);
    for (changed, name) in design {
        if changed {
            if let Some(reason) = &frozen {
                return Err(format!("the {name} can no longer change: {reason}"));
            }
            plan.changed.push(name);
            plan.design_changed = true;
        }
    }
    let selection_reason = selection_frozen(collected, generated);
    let mut selection_changed = false;
    for (changed, name) in selection {
        if changed {
            if let Some(reason) = &selection_reason {
                return Err(format!("the {name} can no longer change: {reason}"));
            }
            plan.changed.push(name);
            plan.design_changed = true;
            selection_changed = true;
        }
    }
    if generated && w.uses_quality_items() {
        return Err(
            "practice, screening and gold items are chosen from imported solutions, and this \
             study's solutions are generated: duplicate it over imported solutions instead"
                .into(),
        );
    }
    plan.reselect = selection_changed || quality_counts;
    Ok(plan)
}

/// The name of a copy of `name`: "… (copy)", or "… (copy 2)", "… (copy 3)", … when taken.
pub fn copy_name(name: &str, taken: &HashSet<String>) -> String {
    let first = format!("{name} (copy)");
    if !taken.contains(&first) {
        return first;
    }
    (2..)
        .map(|n| format!("{name} (copy {n})"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::ProverRole;
    use crate::quality::RaterProtocol;

    fn spec() -> StudySpec {
        StudySpec {
            name: "pilot".into(),
            time_limit_ms: 45_000,
            judgements_per_solution: 3,
            reclaim_grace_ms: 5_000,
            problem_set_id: Uuid::from_u128(1),
            checkpoint_ids: vec![Uuid::from_u128(2), Uuid::from_u128(3)],
            roles: vec![ProverRole::Helpful, ProverRole::Sneaky],
            max_problems: Some(20),
            protocol: RaterProtocol::default(),
            answers: Default::default(),
            time_limits: Default::default(),
        }
    }

    const NOTHING: Collected = Collected {
        items_served: 0,
        judgements: 0,
        quality_items_served: 0,
    };
    const ONE_ITEM: Collected = Collected {
        items_served: 1,
        judgements: 0,
        quality_items_served: 0,
    };
    const ONE_PRACTICE_ITEM: Collected = Collected {
        items_served: 0,
        judgements: 0,
        quality_items_served: 1,
    };

    #[test]
    fn nothing_changed_is_an_empty_plan_even_with_reordered_lists() {
        let mut wanted = spec();
        wanted.checkpoint_ids.reverse();
        wanted.roles.reverse();
        let plan = plan_edit(&spec(), &wanted, &ONE_ITEM, false).unwrap();
        assert_eq!(plan, EditPlan::default());
    }

    #[test]
    fn name_workload_cap_and_breaks_change_at_any_time() {
        let mut wanted = spec();
        wanted.name = "pilot, second wave".into();
        wanted.protocol.max_rater_ms = 3_600_000;
        wanted.protocol.break_every = 20;
        let plan = plan_edit(&spec(), &wanted, &ONE_ITEM, true).unwrap();
        assert_eq!(plan.changed, vec!["name", "workload cap", "break interval"]);
        assert!(!plan.reselect && !plan.design_changed);
    }

    #[test]
    fn design_settings_change_only_while_nothing_is_collected() {
        let mut wanted = spec();
        wanted.time_limit_ms = 30_000;
        wanted.judgements_per_solution = 5;
        let plan = plan_edit(&spec(), &wanted, &NOTHING, false).unwrap();
        assert_eq!(plan.changed, vec!["time limit", "judgements per solution"]);
        assert!(plan.design_changed && !plan.reselect);
        for collected in [ONE_ITEM, ONE_PRACTICE_ITEM] {
            let refused = plan_edit(&spec(), &wanted, &collected, false).unwrap_err();
            assert!(
                refused.starts_with("the time limit can no longer change: raters have been served"),
                "{refused}"
            );
            assert!(refused.contains("Duplicate the study"), "{refused}");
        }
    }

    #[test]
    fn changing_the_selection_or_quality_counts_reselects() {
        let mut wanted = spec();
        wanted.roles = vec![ProverRole::Sneaky];
        let plan = plan_edit(&spec(), &wanted, &NOTHING, false).unwrap();
        assert_eq!(plan.changed, vec!["roles"]);
        assert!(plan.reselect);
        let mut wanted = spec();
        wanted.protocol.practice_items = 2;
        let plan = plan_edit(&spec(), &wanted, &NOTHING, false).unwrap();
        assert!(plan.reselect, "new practice items are chosen");
        let mut wanted = spec();
        wanted.protocol.screening_items = 4;
        wanted.protocol.screening_pass_accuracy = 0.75;
        let plan = plan_edit(&spec(), &wanted, &NOTHING, false).unwrap();
        assert_eq!(plan.changed, vec!["screening items", "screening pass mark"]);
        let refused = plan_edit(&spec(), &wanted, &ONE_ITEM, false).unwrap_err();
        assert!(refused.starts_with("the screening items can no longer change"));
    }

    #[test]
    fn a_generated_study_keeps_its_selection_and_takes_no_quality_items() {
        let mut wanted = spec();
        wanted.max_problems = Some(10);
        let refused = plan_edit(&spec(), &wanted, &NOTHING, true).unwrap_err();
        assert!(
            refused.starts_with("the problems can no longer change: a generation job"),
            "{refused}"
        );
        let mut wanted = spec();
        wanted.time_limit_ms = 60_000;
        assert!(plan_edit(&spec(), &wanted, &NOTHING, true).is_ok());
        wanted.protocol.practice_items = 1;
        assert!(plan_edit(&spec(), &wanted, &NOTHING, true).is_err());
    }

    #[test]
    fn values_that_cannot_work_are_refused() {
        let mut wanted = spec();
        wanted.name = "  ".into();
        assert_eq!(
            plan_edit(&spec(), &wanted, &NOTHING, false).unwrap_err(),
            "the study needs a name"
        );
        let mut wanted = spec();
        wanted.protocol.max_rater_ms = 0;
        assert!(plan_edit(&spec(), &wanted, &ONE_ITEM, false).is_err());
        let mut wanted = spec();
        wanted.protocol.gold_rate = 0.2; // without gold items
        assert!(plan_edit(&spec(), &wanted, &NOTHING, false).is_err());
    }

    #[test]
    fn float_round_trips_through_the_form_are_not_changes() {
        let mut current = spec();
        current.protocol.screening_items = 4;
        current.protocol.screening_pass_accuracy = 0.7;
        let mut wanted = current.clone();
        wanted.protocol.screening_pass_accuracy = 70.0 / 100.0 + 1e-12;
        let plan = plan_edit(&current, &wanted, &ONE_ITEM, false).unwrap();
        assert!(plan.changed.is_empty());
    }

    #[test]
    fn collected_counts_and_reasons() {
        assert!(!NOTHING.any() && ONE_ITEM.any() && ONE_PRACTICE_ITEM.any());
        assert_eq!(design_frozen(&NOTHING), None);
        assert_eq!(selection_frozen(&NOTHING, false), None);
        assert!(selection_frozen(&NOTHING, true).is_some());
        let reason = design_frozen(&Collected {
            items_served: 12,
            judgements: 7,
            quality_items_served: 3,
        })
        .unwrap();
        assert!(reason.starts_with("raters have been served 12 study items and 3 practice"));
        assert!(reason.contains("7 judgements are stored"));
    }

    #[test]
    fn copies_get_a_free_name() {
        let mut taken: HashSet<String> = ["pilot".to_string()].into();
        assert_eq!(copy_name("pilot", &taken), "pilot (copy)");
        taken.insert("pilot (copy)".into());
        taken.insert("pilot (copy 2)".into());
        assert_eq!(copy_name("pilot", &taken), "pilot (copy 3)");
    }
}
