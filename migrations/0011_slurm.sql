-- The Slurm executor (FORGETLAB_EXECUTOR=slurm): each queued job is submitted with sbatch; its
-- batch script runs a worker that may lease only that job, with a token minted for the
-- submission (stored hashed, single use, expiring). The columns follow the latest submission.
ALTER TABLE jobs ADD COLUMN slurm_job_id INTEGER;            -- shown on the jobs page
ALTER TABLE jobs ADD COLUMN slurm_state TEXT;                -- last state seen (squeue, then sacct/scontrol)
ALTER TABLE jobs ADD COLUMN slurm_ended_at TEXT;             -- NULL while the Slurm job is pending or running
ALTER TABLE jobs ADD COLUMN slurm_submit_attempts INTEGER;   -- jobs.attempts at submission: unchanged at the end = never leased
ALTER TABLE jobs ADD COLUMN slurm_token_hash TEXT;           -- SHA-256 of the submission's lease token, until used
ALTER TABLE jobs ADD COLUMN slurm_token_expires_at INTEGER;  -- unix seconds
CREATE INDEX jobs_slurm_active ON jobs(slurm_job_id) WHERE slurm_job_id IS NOT NULL AND slurm_ended_at IS NULL;
