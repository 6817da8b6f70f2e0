//! The PostgreSQL schema, as migrations applied in order and never edited once released.
//! It mirrors the embedded store's tables; `seq` columns keep the order rows were written
//! in (SQLite's `rowid`).

/// Schema migrations; the table `usher_schema` records how many are applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the whole schema as of SQLite migration 6.
    "CREATE TABLE products (
        code TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        created_at BIGINT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE media (
        code TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        editorial TEXT,
        created_at BIGINT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE product_media (
        product TEXT NOT NULL REFERENCES products(code) ON DELETE CASCADE,
        content TEXT NOT NULL,
        seq BIGSERIAL NOT NULL,
        PRIMARY KEY (product, content)
    );
    CREATE INDEX product_media_content ON product_media(content);
    CREATE TABLE purchases (
        hash TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        product TEXT NOT NULL REFERENCES products(code) ON DELETE CASCADE,
        media TEXT,
        account TEXT NOT NULL,
        email TEXT,
        status TEXT NOT NULL,
        purchased_at BIGINT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX purchases_account ON purchases(account);
    CREATE INDEX purchases_email ON purchases(lower(email));
    CREATE INDEX purchases_product ON purchases(product);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        enabled BOOLEAN NOT NULL,
        max_sessions BIGINT,
        max_devices BIGINT
    );
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        data TEXT NOT NULL
    );
    CREATE TABLE device_bindings (
        purchase TEXT NOT NULL REFERENCES purchases(hash) ON DELETE CASCADE,
        device TEXT NOT NULL,
        bound_at BIGINT NOT NULL,
        id TEXT,
        seq BIGSERIAL NOT NULL,
        PRIMARY KEY (purchase, device)
    );
    CREATE TABLE sale_keys (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        purchase TEXT NOT NULL REFERENCES purchases(hash) ON DELETE CASCADE
    );
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
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
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE webhook_queue (
        id BIGSERIAL PRIMARY KEY,
        endpoint TEXT NOT NULL,
        event TEXT NOT NULL,
        event_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt BIGINT NOT NULL
    );
    CREATE INDEX webhook_queue_due ON webhook_queue(next_attempt);",
    // 2 (SQLite 7): each receiver's due deliveries, claimed per receiver
    // (webhooks.max_in_flight_per_endpoint).
    "CREATE INDEX webhook_queue_endpoint_due ON webhook_queue(endpoint, next_attempt);",
];
