//! A task's log as the fake keeps it: the accepted UpdateLog requests themselves, read back as rows.

use act_runner::client::EncodedUpdateLog;
use act_runner::client::proto::runner::LogRow;
use prost::Message;

/// A task's log: every accepted row in index order, kept in the requests it arrived in (each
/// row checked to be a `LogRow` on arrival) and decoded when read, so storing a request of a
/// million rows costs neither a copy nor an allocation per row.
#[derive(Debug, Clone, Default)]
pub struct RowLog {
    /// Each accepted request, with how many of its first rows the log held already.
    requests: Vec<(EncodedUpdateLog, usize)>,
    len: usize,
}

impl RowLog {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends the rows of `request` after its first `skip` ones.
    pub fn push_request(&mut self, request: EncodedUpdateLog, skip: usize) {
        self.len += request.n_rows().saturating_sub(skip);
        self.requests.push((request, skip));
    }

    pub fn rows(&self) -> impl Iterator<Item = LogRow> + '_ {
        let encoded = self
            .requests
            .iter()
            .flat_map(|(request, skip)| request.rows().skip(*skip));
        encoded.map(|row| {
            // Checked on arrival; a row that still fails shows up in a test's comparison.
            LogRow::decode(row).unwrap_or_else(|error| LogRow {
                time: None,
                content: format!("<fake gitea: undecodable row: {error}>"),
            })
        })
    }
}
