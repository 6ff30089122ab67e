//! Reading the audit log for operators (filtered listing, page by page, and
//! verification) and acknowledging a loss found against its anchor.

use skm_crypto::Id;
use skm_store::Store;

use super::operation::{Effect, Operation, Trail};
use super::{Kms, KmsError, internal};
use crate::audit::{AuditError, DEFAULT_PAGE_SIZE, Event, Filter, Lost, MAX_PAGE_SIZE, VerifyReport};
use crate::system_keys::NotReady;

/// Entries that pass a filter: one page of them, oldest first, or (without
/// a page) the newest `filter.limit`, in log order.
#[derive(Debug)]
pub struct ListAudit {
    /// Which entries.
    pub filter: Filter,
    /// Which page, if paging.
    pub page: Option<ListAuditPage>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Default)]
pub struct ListAuditPage {
    /// The token of the previous page (the seq to go on from); empty for
    /// the first page.
    pub token: String,
    /// Entries per page: 0 for [`DEFAULT_PAGE_SIZE`], at most
    /// [`MAX_PAGE_SIZE`].
    pub size: u32,
}

impl ListAuditPage {
    fn start_seq(&self) -> Result<u64, KmsError> {
        if self.token.is_empty() {
            return Ok(1);
        }
        self.token.parse::<u64>().ok().filter(|&seq| seq > 0).ok_or_else(|| {
            KmsError::InvalidArgument(format!(
                "page_token: {:?} is not a token returned by ListAudit (a sequence number)",
                self.token
            ))
        })
    }
}

/// What [`ListAudit`] returns.
#[derive(Debug)]
pub struct AuditPage {
    /// The entries (seq, event), oldest first.
    pub entries: Vec<(u64, Event)>,
    /// The token of the next page; `None` when the log has no more.
    pub next_token: Option<String>,
}

/// Check the whole chain of the log.
#[derive(Debug)]
pub struct VerifyAudit;

/// Acknowledge the loss of the audit entries that kms-api found missing
/// against the log's anchor, so that it serves again. Its intent is the
/// first entry after the gap and names it.
#[derive(Debug)]
pub struct AcknowledgeAuditLoss;

/// What [`AcknowledgeAuditLoss`] acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcknowledgedLoss {
    /// The missing entries.
    pub lost: Lost,
    /// The seq of the entry that acknowledged them.
    pub seq: u64,
}

impl Operation for ListAudit {
    const NAME: &'static str = "ListAudit";
    const EFFECT: Effect = Effect::Read;
    type Output = AuditPage;

    fn target(&self, trail: &mut Trail<'_>) {
        if let Some(ks) = &self.filter.keystore_id {
            trail.named_keystore(ks);
        }
        if let Some(key) = &self.filter.key_id {
            trail.named_key(key);
        }
    }

    fn check(&self) -> Result<(), KmsError> {
        if let Some(page) = &self.page {
            if page.size as usize > MAX_PAGE_SIZE {
                return Err(KmsError::InvalidArgument(format!(
                    "page_size is {}; the limit is {MAX_PAGE_SIZE}",
                    page.size
                )));
            }
            page.start_seq()?;
        }
        Ok(())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Self::Output, KmsError> {
        // Ids are accepted in either case; the log holds them lowercase.
        let normalised = |id: Option<String>| id.map(|s| s.parse::<Id>().map_or(s, |id| id.to_string()));
        let filter = Filter {
            keystore_id: normalised(self.filter.keystore_id),
            key_id: normalised(self.filter.key_id),
            ..self.filter
        };
        let Some(page) = self.page else {
            let entries = kms.audit.list(&filter).await.map_err(internal)?;
            return Ok(AuditPage { entries, next_token: None });
        };
        let size = if page.size == 0 { DEFAULT_PAGE_SIZE } else { page.size as usize };
        let (entries, next) = kms.audit.page(&filter, page.start_seq()?, size).await.map_err(internal)?;
        Ok(AuditPage { entries, next_token: next.map(|seq| seq.to_string()) })
    }
}

impl Operation for VerifyAudit {
    const NAME: &'static str = "VerifyAudit";
    const EFFECT: Effect = Effect::Read;
    type Output = VerifyReport;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<VerifyReport, KmsError> {
        kms.audit.verify().await.map_err(|e| match e {
            AuditError::KeysNotLoaded => KmsError::NotReady(NotReady),
            other => internal(other),
        })
    }
}

impl Operation for AcknowledgeAuditLoss {
    const NAME: &'static str = "AcknowledgeAuditLoss";
    const EFFECT: Effect = Effect::Change;
    type Output = AcknowledgedLoss;

    fn target(&self, trail: &mut Trail<'_>) {
        trail.acknowledges_loss();
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<AcknowledgedLoss, KmsError> {
        // The intent was the entry after the gap if, and only if, the log
        // recorded this very entry as the acknowledgement.
        match (kms.audit.acknowledged_loss(), trail.intent_seq()) {
            (Some((lost, seq)), Some(intent)) if seq == intent => Ok(AcknowledgedLoss { lost, seq }),
            _ => Err(KmsError::FailedPrecondition(
                "no loss of audit entries to acknowledge: the log matches its anchor".to_owned(),
            )),
        }
    }
}
