//! The generation job: a study's problems × prover checkpoints × roles × samples → graded
//! solutions in the study, ready for assignment.
//!
//! Work is cut into chunks (one problem × one checkpoint). A checkpoint's pending chunks are
//! decoded as one stream with continuous batching (`Prover::generate_each`), and finished
//! chunks are committed a few at a time, fenced by the job's lease (see `store::generation`). Each
//! sample's seed derives from the job's seed and the sample's identity, so a retry after a
//! crash regenerates exactly what was lost and skips what was committed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{JobContext, JobError, JobFuture, JobHandler};
use crate::domain::JobKind;
use crate::domain::ProverRole;
use crate::grading;
use crate::ml::prover::{Prover, Sample, SampleRequest};
use crate::ml::sampling::SamplingParams;
use crate::store::generation::{GeneratedChunk, GeneratedSolution, GenerationProblem};
use crate::store::jobs::{ClaimedJob, NewJob};
use crate::store::studies::{Study, StudySpec};
use crate::store::{Store, StoreError};

/// Sequences decoded together (decoding slots): large enough that one step does real work
/// per weight read; a finished sequence's slot is refilled at once, so ragged lengths waste
/// nothing.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Most samples one generation request may ask for per problem, checkpoint and role.
pub const MAX_SAMPLES_PER_ROLE: usize = 16;

/// What a generation job is asked to do; stored as the job's JSON parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// The study the solutions are for.
    pub study_id: Uuid,
    /// Where the problems come from.
    pub problem_set_id: Uuid,
    /// Only the first N problems of the set (by position); all when absent.
    pub max_problems: Option<usize>,
    /// Prover checkpoints with model files.
    pub checkpoint_ids: Vec<Uuid>,
    /// Roles to sample; the paper samples both.
    pub roles: Vec<ProverRole>,
    /// Solutions per problem, checkpoint and role.
    pub samples_per_role: usize,
    /// Temperature, top-p, token cap.
    pub sampling: SamplingParams,
    /// Seed of every draw of the job.
    pub seed: u64,
}

impl GenerationParams {
    /// Solutions generated per problem and checkpoint: roles × samples per role.
    pub fn solutions_per_problem(&self) -> usize {
        self.roles.len() * self.samples_per_role
    }

    /// Why the parameters cannot be run, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.checkpoint_ids.is_empty() {
            return Err("choose at least one prover checkpoint to generate with".into());
        }
        if self.roles.is_empty() {
            return Err("choose at least one role to generate".into());
        }
        if !(1..=MAX_SAMPLES_PER_ROLE).contains(&self.samples_per_role) {
            return Err(format!(
                "samples per role must be between 1 and {MAX_SAMPLES_PER_ROLE}"
            ));
        }
        if self.max_problems == Some(0) {
            return Err("the number of problems must be positive".into());
        }
        self.sampling.check()
    }
}

/// The chunk key of one problem × checkpoint.
pub fn chunk_key(problem_id: Uuid, checkpoint_id: Uuid) -> String {
    format!("{problem_id}/{checkpoint_id}")
}

/// The seed of one sample, fixed by the job seed and the sample's identity (not by batching).
pub fn sample_seed(
    seed: u64,
    problem_id: Uuid,
    checkpoint_id: Uuid,
    role: ProverRole,
    index: usize,
) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(problem_id.as_bytes());
    hasher.update(checkpoint_id.as_bytes());
    hasher.update(role.as_str().as_bytes());
    hasher.update((index as u64).to_le_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// What a researcher asks for besides the study itself when its solutions are to be generated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Prover checkpoints with model files.
    pub checkpoint_ids: Vec<Uuid>,
    /// Roles to sample (empty = both).
    pub roles: Vec<ProverRole>,
    /// Solutions per problem, checkpoint and role.
    pub samples_per_role: usize,
    /// Temperature, top-p, token cap.
    pub sampling: SamplingParams,
    /// Seed of every draw (random when absent, and recorded in the job).
    pub seed: Option<u64>,
}

/// Attempts a generation job gets before a crashing worker or a transient error fails it.
pub const GENERATION_ATTEMPTS: i64 = 3;

/// Creates a study that starts empty and queues the job that fills it; used by the web page
/// and the CLI alike. Nothing is created when the request is invalid.
pub async fn create_generated_study(
    store: &Store,
    spec: &StudySpec,
    request: GenerationRequest,
    created_by: Option<Uuid>,
    now: i64,
) -> Result<(Study, Uuid), StoreError> {
    let roles = if request.roles.is_empty() {
        ProverRole::ALL.to_vec()
    } else {
        request.roles
    };
    let mut params = GenerationParams {
        study_id: Uuid::nil(),
        problem_set_id: spec.problem_set_id,
        max_problems: spec.max_problems,
        checkpoint_ids: request.checkpoint_ids,
        roles,
        samples_per_role: request.samples_per_role,
        sampling: request.sampling,
        seed: request.seed.unwrap_or_else(rand::random),
    };
    params.check().map_err(StoreError::Invalid)?;
    for &id in &params.checkpoint_ids {
        if store.checkpoint_model_dir(id).await?.is_none() {
            return Err(StoreError::Invalid(
                "a chosen checkpoint has no model files: generation needs a prover with weights"
                    .into(),
            ));
        }
    }
    let problems = store
        .problems_for_generation(spec.problem_set_id, spec.max_problems)
        .await?
        .len();
    if problems == 0 {
        return Err(StoreError::Invalid(
            "the problem set has no problems".into(),
        ));
    }
    let study = store
        .create_study_for_generation(spec, created_by, now)
        .await?;
    params.study_id = study.id;
    let job = NewJob {
        kind: JobKind::Generation,
        params: serde_json::to_value(&params)
            .map_err(|e| StoreError::Invalid(format!("generation parameters: {e}")))?,
        study_id: Some(study.id),
        created_by,
        max_attempts: GENERATION_ATTEMPTS,
        // Progress counts solutions, what the jobs page's pace ("solutions/min") speaks of.
        progress_total: (problems * params.checkpoint_ids.len() * params.solutions_per_problem())
            as i64,
    };
    let job_id = store.enqueue_job(&job, now).await?;
    Ok((study, job_id))
}

/// Runs generation jobs with models read from a models folder.
#[derive(Debug, Clone)]
pub struct GenerationHandler {
    models_dir: PathBuf,
    /// Sequences decoded together in one batch.
    batch_size: usize,
}

impl GenerationHandler {
    /// A handler reading checkpoints under `models_dir`, decoding `batch_size` sequences at a
    /// time.
    pub fn new(models_dir: &Path, batch_size: usize) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
            batch_size: batch_size.max(1),
        }
    }
}

impl JobHandler for GenerationHandler {
    fn run(&self, job: ClaimedJob, ctx: JobContext) -> JobFuture {
        Box::pin(run_generation(self.clone(), job, ctx))
    }
}

async fn run_generation(
    handler: GenerationHandler,
    job: ClaimedJob,
    ctx: JobContext,
) -> Result<(), JobError> {
    let params: GenerationParams = serde_json::from_value(job.params)
        .map_err(|e| JobError::Fatal(format!("generation parameters are not valid: {e}")))?;
    params.check().map_err(JobError::Fatal)?;
    let problems = ctx
        .store
        .problems_for_generation(params.problem_set_id, params.max_problems)
        .await?;
    if problems.is_empty() {
        return Err(JobError::Fatal("the problem set has no problems".into()));
    }
    let done: HashSet<String> = ctx.store.chunks_done(job.id).await?;
    let per_problem = params.solutions_per_problem();
    // Progress in solutions (a chunk holds `per_problem` of them).
    let total = (problems.len() * params.checkpoint_ids.len() * per_problem) as i64;
    let mut finished = (done.len() * per_problem) as i64;
    ctx.progress(finished, total).await?;
    let problems_per_batch = (handler.batch_size / per_problem).max(1);
    let stop = ctx.lease_lost_flag();

    for &checkpoint_id in &params.checkpoint_ids {
        let pending: Vec<GenerationProblem> = problems
            .iter()
            .filter(|p| !done.contains(&chunk_key(p.id, checkpoint_id)))
            .cloned()
            .collect();
        if pending.is_empty() {
            continue;
        }
        let model_dir = ctx
            .store
            .checkpoint_model_dir(checkpoint_id)
            .await?
            .ok_or_else(|| {
                JobError::Fatal(format!(
                    "checkpoint {checkpoint_id} has no model files (it only labels imported solutions)"
                ))
            })?;
        let path = handler.models_dir.join(&model_dir);
        let mut prover = tokio::task::spawn_blocking(move || Prover::load(&path, &Device::Cpu))
            .await
            .map_err(|e| JobError::Fatal(format!("loading the prover crashed: {e}")))?
            .map_err(|e| JobError::Fatal(format!("loading prover {model_dir}: {e}")))?;
        // Every pending problem of this checkpoint is decoded in one stream of slots
        // (continuous batching: a finished sequence's slot takes the next request at once);
        // solutions come back as they finish and are committed a group of problems at a time.
        let requests: Vec<SampleRequest> = pending
            .iter()
            .flat_map(|problem| {
                params.roles.iter().flat_map(move |&role| {
                    (0..params.samples_per_role).map(move |k| SampleRequest {
                        question: problem.question.clone(),
                        role,
                        seed: sample_seed(params.seed, problem.id, checkpoint_id, role, k),
                    })
                })
            })
            .collect();
        let roles: Vec<ProverRole> = requests.iter().map(|r| r.role).collect();
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let sampling = params.sampling;
        let flag = Arc::clone(&stop);
        let slots = handler.batch_size;
        let decoding = tokio::task::spawn_blocking(move || {
            prover.generate_each(&requests, &sampling, slots, &flag, |index, sample| {
                // A closed channel means the job stopped taking solutions.
                sender
                    .send((index, sample))
                    .map_err(|_| crate::ml::ModelError::Stopped)
            })
        });
        let mut samples: Vec<Option<Sample>> = vec![None; roles.len()];
        let mut missing: Vec<usize> = vec![per_problem; pending.len()];
        let mut ready: Vec<usize> = Vec::new();
        let mut received = 0;
        while received < roles.len() {
            let Some((index, sample)) = receiver.recv().await else {
                break;
            };
            received += 1;
            samples[index] = Some(sample);
            let problem = index / per_problem;
            missing[problem] -= 1;
            if missing[problem] == 0 {
                ready.push(problem);
            }
            if ready.len() >= problems_per_batch || received == roles.len() {
                ctx.check()?;
                let chunks = finished_chunks(
                    &pending,
                    &std::mem::take(&mut ready),
                    checkpoint_id,
                    per_problem,
                    &roles,
                    &mut samples,
                );
                finished += (chunks.len() * per_problem) as i64;
                ctx.store
                    .commit_generated(
                        &ctx.lease,
                        params.study_id,
                        &chunks,
                        finished,
                        ctx.clock.now_ms(),
                    )
                    .await?;
            }
        }
        drop(receiver);
        decoding
            .await
            .map_err(|e| JobError::Fatal(format!("generation crashed: {e}")))?
            .map_err(JobError::from)?;
    }
    Ok(())
}

/// The chunks of the `ready` problems (indexes into `pending`), their solutions graded and
/// taken out of `samples` (`per_problem` consecutive entries per problem, roles in `roles`).
fn finished_chunks(
    pending: &[GenerationProblem],
    ready: &[usize],
    checkpoint_id: Uuid,
    per_problem: usize,
    roles: &[ProverRole],
    samples: &mut [Option<Sample>],
) -> Vec<GeneratedChunk> {
    ready
        .iter()
        .map(|&p| {
            let problem = &pending[p];
            GeneratedChunk {
                key: chunk_key(problem.id, checkpoint_id),
                problem_id: problem.id,
                checkpoint_id,
                solutions: (p * per_problem..(p + 1) * per_problem)
                    .filter_map(|k| {
                        let sample = samples[k].take()?;
                        let grade = grading::grade(&sample.text, &problem.ground_truth);
                        Some(GeneratedSolution {
                            role: roles[k],
                            text: sample.text,
                            extracted_answer: grade.extracted_answer,
                            grade: grade.outcome,
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_seeds_depend_on_every_part_of_the_identity() {
        let (p, c) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let base = sample_seed(7, p, c, ProverRole::Helpful, 0);
        assert_eq!(base, sample_seed(7, p, c, ProverRole::Helpful, 0));
        assert_ne!(base, sample_seed(8, p, c, ProverRole::Helpful, 0));
        assert_ne!(base, sample_seed(7, c, p, ProverRole::Helpful, 0));
        assert_ne!(base, sample_seed(7, p, c, ProverRole::Sneaky, 0));
        assert_ne!(base, sample_seed(7, p, c, ProverRole::Helpful, 1));
    }

    #[test]
    fn parameters_are_checked() {
        let mut params = GenerationParams {
            study_id: Uuid::nil(),
            problem_set_id: Uuid::nil(),
            max_problems: Some(3),
            checkpoint_ids: vec![Uuid::nil()],
            roles: vec![ProverRole::Helpful, ProverRole::Sneaky],
            samples_per_role: 2,
            sampling: SamplingParams::default(),
            seed: 1,
        };
        assert!(params.check().is_ok());
        params.samples_per_role = 0;
        assert!(params.check().unwrap_err().contains("samples per role"));
        params.samples_per_role = 1;
        params.roles.clear();
        assert!(params.check().unwrap_err().contains("role"));
    }
}
