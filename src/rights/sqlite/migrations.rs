//! The schema, as the migrations that build it: applied in order, never edited once
//! released (a database made by an older usher migrates forward from where it stopped).

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the PPV rights model.
    "CREATE TABLE products (
        code TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE media (
        code TEXT PRIMARY KEY,
        prefix TEXT NOT NULL UNIQUE,
        editorial TEXT,
        created_at INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE product_media (
        product TEXT NOT NULL REFERENCES products(code) ON DELETE CASCADE,
        content TEXT NOT NULL,
        PRIMARY KEY (product, content)
    );
    CREATE INDEX product_media_content ON product_media(content);
    CREATE TABLE purchases (
        hash TEXT PRIMARY KEY,
        product TEXT NOT NULL REFERENCES products(code) ON DELETE CASCADE,
        media TEXT,
        account TEXT NOT NULL,
        email TEXT,
        status TEXT NOT NULL,
        purchased_at INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX purchases_account ON purchases(account);
    CREATE INDEX purchases_email ON purchases(email);
    CREATE INDEX purchases_product ON purchases(product);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL
    );
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        data TEXT NOT NULL
    );",
    // 2: devices and sessions: activations per purchase, account-wide stream limits.
    "CREATE TABLE device_bindings (
        purchase TEXT NOT NULL REFERENCES purchases(hash) ON DELETE CASCADE,
        device TEXT NOT NULL,
        bound_at INTEGER NOT NULL,
        PRIMARY KEY (purchase, device)
    );
    ALTER TABLE accounts ADD COLUMN max_sessions INTEGER;
    ALTER TABLE accounts ADD COLUMN max_devices INTEGER;",
    // 3: the id of a device the operator added ahead of use (AddDeviceToCustomer);
    // NULL for devices a player activated, of which only the hash is kept.
    "ALTER TABLE device_bindings ADD COLUMN id TEXT;",
    // 4: idempotency keys of sales, so a resubmitted order sells once.
    "CREATE TABLE sale_keys (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        purchase TEXT NOT NULL REFERENCES purchases(hash) ON DELETE CASCADE
    );",
    // 5: the audit trail of admin writes.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        interface TEXT NOT NULL,
        action TEXT NOT NULL,
        target_kind TEXT NOT NULL,
        target TEXT NOT NULL,
        purchase TEXT,
        account TEXT,
        changes TEXT NOT NULL
    );
    CREATE INDEX audit_purchase ON audit(purchase);
    CREATE INDEX audit_account ON audit(account);
    CREATE INDEX audit_action ON audit(action);
    CREATE INDEX audit_at ON audit(at);",
    // 6: the persisted webhook delivery queue.
    "CREATE TABLE webhook_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint TEXT NOT NULL,
        event TEXT NOT NULL,
        event_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL
    );
    CREATE INDEX webhook_queue_due ON webhook_queue(next_attempt);",
    // 7: each receiver's due deliveries, claimed per receiver (webhooks.max_in_flight_per_endpoint).
    "CREATE INDEX webhook_queue_endpoint_due ON webhook_queue(endpoint, next_attempt);",
];
