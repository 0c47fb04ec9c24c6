//! A job into the destination's load: its records decoded into rows (validation, conversion,
//! rejects) and streamed into a row load, or its objects handed to an object load; then the
//! commit with the job's watermark, or the rollback when the records cannot be loaded.

use std::sync::Arc;

use crate::config::OnInvalidRecord;
use crate::dap::CompleteJob;
use crate::destination::{Commit, Load, LoadStats, Reject, RowChange, RowLoad};
use crate::schema::TableSchema;

use super::progress::Progress;
use super::{Attempt, Decoded, Engine, RowDecoder, SyncErrorKind, guard};

impl Engine {
    /// Streams a job into a load and commits it with the job's watermark, or rolls it back when
    /// the records cannot be loaded. `changes`: the records are a change set (upserts and
    /// deletes), not a snapshot's rows. Returns what the commit did and the bytes read.
    pub(super) async fn fill(
        &self,
        job: &CompleteJob,
        load: Load,
        attempt: &mut Attempt,
        changes: bool,
        repeated_keys: bool,
        replaced: Option<TableSchema>,
    ) -> Result<(LoadStats, u64), SyncErrorKind> {
        let (bytes, load) = match load {
            Load::Rows(mut load) => {
                match self.pump(job, load.as_mut(), changes, repeated_keys).await {
                    Ok(bytes) => (bytes, Load::Rows(load)),
                    Err(error) => {
                        load.abort().await;
                        return Err(error);
                    }
                }
            }
            Load::Objects(mut load) => match load.save(&self.dap, job).await {
                Ok(bytes) => (bytes, Load::Objects(load)),
                Err(error) => {
                    load.abort().await;
                    return Err(error.into());
                }
            },
        };
        attempt.result.bytes = bytes as i64;
        let commit = Commit {
            run_id: attempt.run_id,
            watermark: job.watermark(),
            job_id: job.id.clone(),
            bytes: bytes as i64,
            replaced_schema: replaced,
        };
        let stats = match load {
            Load::Rows(load) => load.commit(commit).await?,
            Load::Objects(load) => load.commit(commit).await?,
        };
        Ok((stats, bytes))
    }

    /// Streams a job's records into a load: validation, conversion, rejects. Returns the bytes read.
    async fn pump(
        &self,
        job: &CompleteJob,
        load: &mut dyn RowLoad,
        incremental: bool,
        repeated_keys: bool,
    ) -> Result<u64, SyncErrorKind> {
        let plan = load.plan().clone();
        let label = plan.label();
        let decoder = RowDecoder::new(plan.clone(), self.options.validate_records, incremental)
            .map_err(SyncErrorKind::State)?;
        let mut stream = self.dap.records_with(job, Arc::new(decoder));
        // Where a key repeats, the last one wins: the last in the job's order of objects and
        // lines, which the loaders see only when the objects come one after the other. Some
        // databases also load a snapshot faster so.
        if repeated_keys || load.in_key_order() {
            stream = stream.sequential();
        }
        let mut progress = Progress::new(&label, self.options.progress);
        let mut bytes = 0u64;
        let mut tally = guard::RejectTally::default();
        while let Some(batch) = stream.next_batch().await {
            let batch = batch?;
            bytes += batch.bytes;
            let mut rejects: Vec<Reject> = batch
                .malformed
                .into_iter()
                .map(|m| Reject {
                    key: None,
                    reason: format!("is not a valid record: {}", m.reason),
                    line: m.line,
                })
                .collect();
            let mut rows = Vec::new();
            let mut changes = Vec::new();
            let records = batch.records.len();
            let lines = records + rejects.len();
            for decoded in batch.records {
                match decoded {
                    Decoded::Upsert(row) if incremental => {
                        changes.push(RowChange { delete: false, row })
                    }
                    Decoded::Upsert(row) => rows.push(row),
                    Decoded::Delete(row) => changes.push(RowChange { delete: true, row }),
                    Decoded::Rejected(reject) => rejects.push(reject),
                }
            }
            tally.add(lines, rejects.iter().map(|r| r.reason.as_str()));
            if !rejects.is_empty() && self.options.on_invalid_record == OnInvalidRecord::Fail {
                let reason = rejects.swap_remove(0).reason;
                return Err(SyncErrorKind::InvalidRecords {
                    count: tally.rejected() as usize,
                    reason,
                });
            }
            if incremental {
                load.changes(changes).await?;
            } else {
                load.rows(rows).await?;
            }
            load.rejects(rejects).await?;
            progress.advance(records as u64, batch.bytes);
            crate::failpoint::hit("sync.batch");
        }
        progress.finish();
        if let Err(refused) = tally.check(self.options.max_rejected_fraction) {
            tracing::warn!(table = %label, rejected = refused.rejected, records = refused.records, "too many records rejected; the result is not applied");
            return Err(SyncErrorKind::TooManyRejects {
                count: refused.rejected,
                records: refused.records,
                reason: refused.first_reason,
            });
        }
        if tally.rejected() > 0 {
            tracing::warn!(table = %label, rejected = tally.rejected(), "records went to the reject table");
        }
        Ok(bytes)
    }
}
