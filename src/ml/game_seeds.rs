//! A training run repeated with several seeds (issue 24): each seed's run in its own folder,
//! and per round the mean and 95 % interval across seeds of the figures a researcher compares
//! with the paper, so a difference between rounds can be told from noise.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::ModelError;
use super::game_round::{
    FolderJournal, GameOptions, GameReport, RoundReport, run_game, write_file_atomically,
};
use crate::game::RoundMetrics;
use crate::metrics::{MeanInterval, mean_interval};

/// One round's figures across the seeds that reached it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundAcrossSeeds {
    /// The round (0 = the initial prover).
    pub round: u32,
    /// Seeds whose run has this round.
    pub seeds: usize,
    /// Helpful solutions that are correct.
    pub helpful_accuracy: Option<MeanInterval>,
    /// Sneaky solutions that are incorrect.
    pub sneaky_incorrect: Option<MeanInterval>,
    /// Sneaky solutions that are incorrect and convincing (V′ > 0).
    pub sneaky_success: Option<MeanInterval>,
    /// The round's verifier on the round's prover.
    pub verifier_auroc: Option<MeanInterval>,
    /// Sneaky incorrect solutions accepted at the round's threshold.
    pub fool_rate: Option<MeanInterval>,
    /// Balanced best-of-n accuracy.
    pub best_of_n_accuracy: Option<MeanInterval>,
    /// Attack steps until fooled, counting an attack that was not fooled as its cap (so the
    /// mean is a lower bound when `not_fooled` > 0).
    pub attack_steps: Option<MeanInterval>,
    /// Attacks that reached their cap without fooling the verifier.
    pub not_fooled: usize,
}

/// Per round, the mean and interval of each figure across the runs (one per seed) that have
/// that round; a figure missing in a run (no sample of that kind) leaves that run out of it.
pub fn across_seeds(runs: &[Vec<RoundReport>]) -> Vec<RoundAcrossSeeds> {
    let last = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..last)
        .map(|index| {
            let reached: Vec<&RoundReport> = runs.iter().filter_map(|r| r.get(index)).collect();
            let figure = |value: fn(&RoundMetrics) -> Option<f64>| {
                let values: Vec<f64> = reached.iter().filter_map(|r| value(&r.metrics)).collect();
                mean_interval(&values)
            };
            let attacks: Vec<_> = reached.iter().filter_map(|r| r.attack.as_ref()).collect();
            let steps: Vec<f64> = attacks
                .iter()
                .map(|a| a.steps_to_target.unwrap_or(a.cap) as f64)
                .collect();
            RoundAcrossSeeds {
                round: reached.first().map_or(index as u32, |r| r.round),
                seeds: reached.len(),
                helpful_accuracy: figure(|m| m.prover_accuracy),
                sneaky_incorrect: figure(|m| m.sneaky_incorrect),
                sneaky_success: figure(|m| m.sneaky_success),
                verifier_auroc: figure(|m| m.verifier_auroc),
                fool_rate: figure(|m| m.fool_rate),
                best_of_n_accuracy: figure(|m| m.best_of_n_accuracy),
                attack_steps: mean_interval(&steps),
                not_fooled: attacks
                    .iter()
                    .filter(|a| a.steps_to_target.is_none())
                    .count(),
            }
        })
        .collect()
}

/// What a repeated run wrote to `seeds.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SeedsReport {
    /// The seeds, in the order they ran.
    pub seeds: Vec<u64>,
    /// Each seed's run folder (its `game.json` has every figure of that seed).
    pub folders: Vec<PathBuf>,
    /// Per round, across the seeds.
    pub rounds: Vec<RoundAcrossSeeds>,
    /// Wall-clock seconds of each seed's run (its last attempt).
    pub seconds: Vec<f64>,
}

/// The folder of one seed's run inside a repeated run's folder.
pub fn seed_folder(out: &Path, seed: u64) -> PathBuf {
    out.join(format!("seed-{seed}"))
}

/// Runs each of `runs` (one per seed, each with its own folder; resumable like a single run)
/// one after the other, then writes `seeds.json` with the figures across seeds into `out`.
pub fn run_seeds(
    runs: &[GameOptions],
    out: &Path,
    stop: &AtomicBool,
    log: &mut dyn FnMut(&str),
) -> Result<SeedsReport, ModelError> {
    let mut reports: Vec<GameReport> = Vec::with_capacity(runs.len());
    for options in runs {
        log(&format!(
            "seed {}: run in {}",
            options.seed,
            options.out.display()
        ));
        let mut journal = FolderJournal::open(options)?;
        reports.push(run_game(options, &mut journal, stop, log)?);
    }
    let report = SeedsReport {
        seeds: runs.iter().map(|o| o.seed).collect(),
        folders: runs.iter().map(|o| o.out.clone()).collect(),
        rounds: across_seeds(&reports.iter().map(|r| r.rounds.clone()).collect::<Vec<_>>()),
        seconds: reports.iter().map(|r| r.seconds).collect(),
    };
    let bytes =
        serde_json::to_vec_pretty(&report).map_err(|e| ModelError::Invalid(e.to_string()))?;
    let path = out.join("seeds.json");
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    write_file_atomically(&path, &bytes)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::AttackReport;

    fn round(
        round: u32,
        auroc: Option<f64>,
        attack: Option<(Option<usize>, usize)>,
    ) -> RoundReport {
        RoundReport {
            round,
            prover: None,
            steps: 0,
            optimiser: Default::default(),
            sneaky_caught_up: false,
            verifier_solutions: 0,
            verifier_validation_auroc: None,
            metrics: RoundMetrics {
                prover_accuracy: Some(0.9),
                sneaky_success: None,
                sneaky_incorrect: Some(0.5),
                verifier_accuracy: None,
                verifier_auroc: auroc,
                best_of_n_accuracy: None,
                fool_threshold: Some(0.0),
                fool_rate: Some(0.25),
            },
            attack: attack.map(|(steps_to_target, cap)| AttackReport {
                target: 0.5,
                cap,
                fool_rates: Vec::new(),
                steps_to_target,
            }),
            seconds: 1.0,
        }
    }

    #[test]
    fn figures_are_summarised_per_round_across_seeds() {
        let runs = vec![
            vec![
                round(0, Some(0.5), Some((Some(1), 4))),
                round(1, Some(0.8), None),
            ],
            vec![round(0, Some(0.7), Some((None, 4))), round(1, None, None)],
            vec![round(0, Some(0.9), Some((Some(2), 4)))],
        ];
        let rounds = across_seeds(&runs);
        assert_eq!(rounds.len(), 2);
        let first = &rounds[0];
        assert_eq!(first.seeds, 3);
        // Mean 0.7, sd 0.2, t(2) = 4.3026527: as scipy gives (see metrics' test).
        let auroc = first.verifier_auroc.unwrap();
        assert!((auroc.mean - 0.7).abs() < 1e-12 && (auroc.low - 0.203_172_457_6).abs() < 1e-6);
        // Attack steps 1, cap 4 (not fooled), 2: mean 7/3, one not fooled.
        let steps = first.attack_steps.unwrap();
        assert!((steps.mean - 7.0 / 3.0).abs() < 1e-12);
        assert_eq!(first.not_fooled, 1);
        assert_eq!(first.fool_rate.unwrap().mean, 0.25);
        assert_eq!(first.sneaky_success, None);
        // Round 1: two seeds reached it, one has an AUROC; no attacks.
        let second = &rounds[1];
        assert_eq!((second.round, second.seeds), (1, 2));
        let auroc = second.verifier_auroc.unwrap();
        assert_eq!((auroc.n, auroc.mean, auroc.low), (1, 0.8, 0.8));
        assert_eq!(second.attack_steps, None);
        assert!(across_seeds(&[]).is_empty());
    }
}
