//! Moving every record from one store to another as JSON lines (`usher store export` and
//! `usher store import`): how an operator goes from the embedded SQLite file to
//! PostgreSQL without losing a purchase.
//!
//! One line per record, `{"kind": …, …}`, in an order that an import can replay: contacts,
//! products, media, links, accounts, purchases, device bindings, idempotency keys, the
//! audit trail, waiting webhook deliveries. Tickets stay inside their purchases (they are
//! what buyers hold); keep the file as secret as the database. An import is written in one
//! transaction that commits only once the file proved whole: all of it or nothing.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::model::{Account, Binding, Contacts, Media, Product, Purchase};
use super::store::{AuditEntry, AuditFilter, NewDelivery, Page, PurchaseFilter, SaleKey, Store};

/// One exported record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Contacts {
        contacts: Contacts,
    },
    Product {
        product: Product,
    },
    Media {
        media: Media,
    },
    Link {
        product: String,
        content: String,
    },
    Account {
        account: Account,
    },
    Purchase {
        purchase: Purchase,
    },
    Binding {
        purchase: String,
        binding: Binding,
    },
    SaleKey {
        key: String,
        sale: SaleKey,
    },
    Audit {
        entry: AuditEntry,
    },
    Webhook {
        delivery: NewDelivery,
    },
    /// The last line: what came before it, so an import knows the file is whole.
    End {
        counts: Counts,
    },
}

/// How many records of each kind moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Products.
    pub products: u64,
    /// Media.
    pub media: u64,
    /// Product–content links.
    pub links: u64,
    /// Accounts.
    pub accounts: u64,
    /// Purchases.
    pub purchases: u64,
    /// Device bindings.
    pub bindings: u64,
    /// Idempotency keys.
    pub sale_keys: u64,
    /// Audit entries.
    pub audit: u64,
    /// Waiting webhook deliveries.
    pub webhooks: u64,
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] super::store::StoreError),
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A line of the file is not a record.
    #[error("line {line}: {why}")]
    Line {
        /// Its number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The target already holds records: an import goes into an empty store.
    #[error("the target store is not empty (it holds {0}): import into an empty store")]
    NotEmpty(&'static str),
    /// The file stops before its end line, or its lines do not add up to it: cut short
    /// (an export that failed or was interrupted, a copy not finished).
    #[error("the file is incomplete: {0}")]
    Incomplete(String),
}

fn write_line(out: &mut impl Write, record: &Record) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Every page of a listing.
fn all_pages<T>(
    mut page_of: impl FnMut(Page) -> Result<Vec<T>, super::store::StoreError>,
) -> Result<Vec<T>, super::store::StoreError> {
    let mut all = Vec::new();
    loop {
        let page = page_of(Page {
            offset: all.len() as u32,
            limit: Page::MAX_LIMIT,
        })?;
        let last = page.len() < Page::MAX_LIMIT as usize;
        all.extend(page);
        if last {
            return Ok(all);
        }
    }
}

/// Writes every record of `store` to `out`, one JSON line each.
///
/// # Errors
/// When the store cannot be read or `out` written.
pub fn export(store: &dyn Store, out: &mut impl Write) -> Result<Counts, TransferError> {
    let mut n = Counts::default();
    write_line(
        out,
        &Record::Contacts {
            contacts: store.contacts()?,
        },
    )?;
    let products = all_pages(|page| store.products(page))?;
    for product in &products {
        write_line(
            out,
            &Record::Product {
                product: product.clone(),
            },
        )?;
        n.products += 1;
    }
    for media in store.all_media()? {
        write_line(out, &Record::Media { media })?;
        n.media += 1;
    }
    for product in &products {
        for content in store.linked(&product.code)? {
            write_line(
                out,
                &Record::Link {
                    product: product.code.clone(),
                    content,
                },
            )?;
            n.links += 1;
        }
    }
    for account in store.accounts()? {
        write_line(out, &Record::Account { account })?;
        n.accounts += 1;
    }
    let purchases = all_pages(|page| store.purchases(&PurchaseFilter::default(), page))?;
    for purchase in &purchases {
        write_line(
            out,
            &Record::Purchase {
                purchase: purchase.clone(),
            },
        )?;
        n.purchases += 1;
    }
    for purchase in &purchases {
        for binding in store.devices(&purchase.hash)? {
            write_line(
                out,
                &Record::Binding {
                    purchase: purchase.hash.clone(),
                    binding,
                },
            )?;
            n.bindings += 1;
        }
    }
    for (key, sale) in store.sale_keys()? {
        write_line(out, &Record::SaleKey { key, sale })?;
        n.sale_keys += 1;
    }
    let audit = all_pages(|page| Ok(store.audit(&AuditFilter::default(), page)?.0))?;
    for entry in audit {
        write_line(out, &Record::Audit { entry })?;
        n.audit += 1;
    }
    for queued in store.pending_webhooks()? {
        write_line(
            out,
            &Record::Webhook {
                delivery: queued.delivery,
            },
        )?;
        n.webhooks += 1;
    }
    write_line(out, &Record::End { counts: n })?;
    out.flush()?;
    Ok(n)
}

/// What `store` already holds, by kind, if anything.
fn held(store: &dyn Store) -> Result<Option<&'static str>, super::store::StoreError> {
    let one = Page {
        offset: 0,
        limit: 1,
    };
    Ok(if store.product_count()? > 0 {
        Some("products")
    } else if !store.all_media()?.is_empty() {
        Some("media")
    } else if !store.accounts()?.is_empty() {
        Some("accounts")
    } else if !store.purchases(&PurchaseFilter::default(), one)?.is_empty() {
        Some("purchases")
    } else if !store.sale_keys()?.is_empty() {
        Some("idempotency keys")
    } else if !store.audit(&AuditFilter::default(), one)?.0.is_empty() {
        Some("audit entries")
    } else if !store.pending_webhooks()?.is_empty() {
        Some("webhook deliveries")
    } else {
        None
    })
}

/// Writes every record of `input` (an [`export`]) into `store`, which must hold nothing.
/// Each record is one store write; a failed line stops the import and names the line. The
/// file must end with its end line, whose counts must match the lines before it. The
/// records are read and written one at a time, never all held in memory.
///
/// `Ok` means the file was whole and every record written, not that anything is kept: give
/// it a store inside one transaction ([`super::sqlite::SqliteStore::importing`],
/// [`super::postgres::PostgresStore::importing`]) and commit that only after `Ok`, so that
/// a failure leaves the store as empty as it was (`usher store import` does).
///
/// # Errors
/// A non-empty target, an unreadable line, a store failure, or a file cut short.
pub fn import(store: &dyn Store, input: impl BufRead) -> Result<Counts, TransferError> {
    if let Some(what) = held(store)? {
        return Err(TransferError::NotEmpty(what));
    }
    let mut n = Counts::default();
    let mut ended = false;
    for (i, line) in input.lines().enumerate() {
        let at = |why: String| TransferError::Line { line: i + 1, why };
        let line = line.map_err(|e| at(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        if ended {
            return Err(at("a record after the end line".to_owned()));
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        let written = match record {
            Record::End { counts } if counts == n => {
                ended = true;
                Ok(())
            }
            Record::End { counts } => {
                return Err(TransferError::Incomplete(format!(
                    "its end line counts {counts:?}, the lines before it {n:?}"
                )))
            }
            Record::Contacts { contacts } => store.put_contacts(&contacts),
            Record::Product { product } => {
                n.products += 1;
                store.create_product(&product)
            }
            Record::Media { media } => {
                n.media += 1;
                store.create_media(&media)
            }
            Record::Link { product, content } => {
                n.links += 1;
                store.link(&product, &content)
            }
            Record::Account { account } => {
                n.accounts += 1;
                store.put_account(&account)
            }
            Record::Purchase { purchase } => {
                n.purchases += 1;
                store.create_purchase(&purchase)
            }
            Record::Binding { purchase, binding } => {
                n.bindings += 1;
                // No limit: the binding was admitted when it was made.
                match &binding.id {
                    Some(id) => {
                        store.add_device(&purchase, &binding.device, id, None, binding.bound_at)
                    }
                    None => store.bind_device(&purchase, &binding.device, None, binding.bound_at),
                }
                .map(drop)
            }
            Record::SaleKey { key, sale } => {
                n.sale_keys += 1;
                store.put_sale_key(&key, &sale)
            }
            Record::Audit { entry } => {
                n.audit += 1;
                store.append_audit(&entry)
            }
            Record::Webhook { delivery } => {
                n.webhooks += 1;
                store.enqueue_webhooks(&[delivery], u64::MAX).map(drop)
            }
        };
        written.map_err(|e| at(e.to_string()))?;
    }
    if !ended {
        return Err(TransferError::Incomplete(
            "it stops before its end line".to_owned(),
        ));
    }
    Ok(n)
}
