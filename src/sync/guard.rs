//! The rejects guard: a result whose records are mostly rejected is not applied.
//!
//! A result that the database refuses wholesale (a schema the records do not follow, a column
//! type that no longer fits) would otherwise commit as an empty change set and move the
//! watermark past data that never arrived. Above `sync.max_rejected_fraction` of rejected
//! records, and always when every record of a non-empty result is rejected, the run fails
//! instead, leaving the table and its watermark as they were.

/// Records and rejects counted while a result streams in.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RejectTally {
    /// Every record of the result: loaded, deleted or rejected.
    records: u64,
    rejected: u64,
    first_reason: Option<String>,
}

/// A result refused by the guard.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refused {
    pub rejected: u64,
    pub records: u64,
    pub first_reason: String,
}

impl RejectTally {
    /// Counts `records` records of a batch, of which `rejects` (their reasons in order) were
    /// rejected.
    pub fn add<'a>(&mut self, records: usize, rejects: impl IntoIterator<Item = &'a str>) {
        self.records += records as u64;
        for reason in rejects {
            self.rejected += 1;
            if self.first_reason.is_none() {
                self.first_reason = Some(reason.to_owned());
            }
        }
    }

    /// Rejected records so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether the result may be applied with at most `max_fraction` of it rejected.
    pub fn check(&self, max_fraction: f64) -> Result<(), Refused> {
        if self.rejected == 0 {
            return Ok(());
        }
        let everything = self.rejected >= self.records;
        if everything || self.rejected as f64 > max_fraction * self.records as f64 {
            return Err(Refused {
                rejected: self.rejected,
                records: self.records,
                first_reason: self.first_reason.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(records: usize, rejected: usize) -> RejectTally {
        let mut tally = RejectTally::default();
        let reasons: Vec<String> = (0..rejected).map(|i| format!("reason {i}")).collect();
        tally.add(records, reasons.iter().map(String::as_str));
        tally
    }

    #[test]
    fn a_share_above_the_limit_is_refused_with_the_first_reason() {
        assert_eq!(tally(1000, 10).check(0.01), Ok(()));
        let refused = tally(1000, 11).check(0.01).unwrap_err();
        assert_eq!(
            (
                refused.rejected,
                refused.records,
                refused.first_reason.as_str()
            ),
            (11, 1000, "reason 0")
        );
        assert_eq!(tally(0, 0).check(0.0), Ok(()));
        assert_eq!(tally(10, 0).check(0.0), Ok(()));
        assert!(tally(10, 1).check(0.0).is_err());
    }

    #[test]
    fn a_result_whose_every_record_is_rejected_is_always_refused() {
        assert!(tally(3, 3).check(1.0).is_err());
        assert!(tally(1, 1).check(1.0).is_err());
        assert_eq!(tally(3, 2).check(1.0), Ok(()));
    }

    #[test]
    fn batches_add_up() {
        let mut tally = RejectTally::default();
        tally.add(50, []);
        tally.add(50, ["first", "second"]);
        assert_eq!(tally.rejected(), 2);
        assert_eq!(tally.check(0.01).unwrap_err().first_reason, "first");
        assert_eq!(tally.check(0.02), Ok(()));
    }
}
