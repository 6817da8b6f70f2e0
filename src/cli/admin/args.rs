//! The command-line shape of `usher admin …` (clap derive); [`super`] runs it.

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;

/// `usher admin`: options shared by every admin subcommand.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin listener base URL [env: USHER_ADMIN_URL] [default: http://127.0.0.1:9090].
    #[arg(long, global = true, value_name = "URL", help_heading = "Admin API")]
    pub url: Option<String>,
    /// The admin credential, `admin.token` [env: USHER_ADMIN_TOKEN]; required. Prefer the
    /// variable: other local users can read a --token in the process list.
    #[arg(long, global = true, value_name = "TOKEN", help_heading = "Admin API")]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `usher admin …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Products: what is sold, and the rules of its rights.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Media: content ids mapped to origin path prefixes.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Buyers: purchases of a product, with their tickets.
    #[command(subcommand)]
    Buyer(BuyerCommand),
    /// Accounts: switch a buyer account off or on.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Devices: the activations of a purchase.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Sessions: what is playing now.
    #[command(subcommand)]
    Session(SessionCommand),
}

/// `usher admin product …`.
#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Create a product; prints its code.
    Create(Box<ProductCreate>),
    /// Every product, one JSON object per line.
    List,
    /// Delete a product with its media links and purchases; prints its code. A product
    /// with active purchases is refused (409 has_buyers) unless `--force`.
    Delete {
        /// The product code.
        code: String,
        /// Delete it even though buyers hold it: their purchases go with it.
        #[arg(long)]
        force: bool,
    },
}

/// `usher admin product create`. Values go to the API as written, under the same names
/// (unset ones as `null`, which it ignores); it checks them.
#[derive(Debug, Args, Serialize)]
pub struct ProductCreate {
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Product code (default: a random one).
    #[arg(long)]
    pub code: Option<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Rights last this many days from purchase.
    #[arg(long, value_name = "DAYS")]
    pub period: Option<String>,
    /// Rights last this many hours.
    #[arg(long, value_name = "H")]
    pub hours: Option<String>,
    /// Where --hours count from: purchase or first_play.
    #[arg(long, value_name = "FROM")]
    pub hours_from: Option<String>,
    /// Rights start no earlier: YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS" (UTC), or Unix seconds.
    #[arg(long, value_name = "DATE")]
    pub access_start: Option<String>,
    /// Rights end no later: YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS" (UTC), or Unix seconds.
    #[arg(long, value_name = "DATE")]
    pub access_expire: Option<String>,
    /// Price as written, e.g. 9.90 (recorded, never charged).
    #[arg(long, value_name = "X")]
    pub cost: Option<String>,
    /// Currency of the price (ISO 4217, e.g. EUR).
    #[arg(long)]
    pub currency: Option<String>,
    /// How many devices may ever activate one purchase.
    #[arg(long, value_name = "N")]
    pub activation: Option<String>,
    /// How many devices may play at once.
    #[arg(long, value_name = "N")]
    pub max_devices: Option<String>,
    /// Seconds at the start of each media that play without a ticket.
    #[arg(long, value_name = "SECS")]
    pub preview: Option<String>,
    /// Device classes it plays on, comma-separated: ott, iptv, hybrid (default: all).
    #[arg(long, value_name = "LIST")]
    pub device_classes: Option<String>,
}

/// `usher admin media …`.
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Create a media unless its code exists (then its prefix must match), put it into a
    /// product; prints the media code.
    Add(Box<MediaAdd>),
}

/// `usher admin media add`; serialised (without `product`) it is the media to create.
#[derive(Debug, Args, Serialize)]
pub struct MediaAdd {
    /// Content id.
    #[arg(long)]
    pub code: String,
    /// Origin path prefix holding it, e.g. /events/final/.
    #[arg(long)]
    pub prefix: String,
    /// Entry playlist below the prefix (default: master.m3u8).
    #[arg(long)]
    pub playlist: Option<String>,
    /// Display title.
    #[arg(long)]
    pub title: Option<String>,
    /// Editorial id grouping renditions of the same content.
    #[arg(long)]
    pub editorial: Option<String>,
    /// A live event (may be sold before its stream exists).
    #[arg(long)]
    pub live: bool,
    /// The product to put it into.
    #[arg(long)]
    #[serde(skip)]
    pub product: String,
}

/// `usher admin buyer …`.
#[derive(Debug, Subcommand)]
pub enum BuyerCommand {
    /// Sell a product; prints the purchase hash, then the play URL (or the ticket).
    Add(Box<BuyerAdd>),
    /// A product's purchases, one JSON object per line.
    List {
        /// The product code.
        #[arg(long)]
        product: String,
        /// Only this buyer email.
        #[arg(long)]
        email: Option<String>,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a purchase (next request: 403 revoked); prints its hash.
    Revoke {
        /// The purchase hash.
        hash: String,
    },
    /// Delete a purchase (next request: 403 no_rights); prints its hash.
    Delete {
        /// The purchase hash.
        hash: String,
    },
}

/// `usher admin buyer add`: at least one of --email, --account, --phone. Serialised, it is
/// the API's buyer.
#[derive(Debug, Args, Serialize)]
#[command(group(ArgGroup::new("buyer").required(true).multiple(true).args(["email", "account", "phone"])))]
pub struct BuyerAdd {
    /// The product code.
    #[arg(long)]
    pub product: String,
    /// The media it is bought for (default: the product's only media, if it has one).
    #[arg(long)]
    pub media: Option<String>,
    /// Buyer's email.
    #[arg(long)]
    pub email: Option<String>,
    /// Account id, the subject of its tickets (default: a new random one).
    #[arg(long)]
    pub account: Option<String>,
    /// Buyer's phone.
    #[arg(long)]
    pub phone: Option<String>,
    /// Buyer's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Rights start no earlier (overrides the product's).
    #[arg(long, value_name = "DATE")]
    pub access_start: Option<String>,
    /// Rights end at this date (replaces the product's period, hours and expiry).
    #[arg(long, value_name = "DATE")]
    pub access_expire: Option<String>,
    /// Idempotency key: repeating the command with the same order id and arguments
    /// answers the first sale again instead of selling twice.
    #[arg(long, value_name = "ID")]
    pub order_id: Option<String>,
}

/// `usher admin account …`; each prints the account id.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Refuse everything the account holds from its next request on (account_disabled).
    Disable {
        /// The account id.
        id: String,
    },
    /// Let the account play again.
    Enable {
        /// The account id.
        id: String,
    },
}

/// `usher admin device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// A purchase's devices, one JSON object per line (`device` is the hash, `id` the id of
    /// a device added with `device add`).
    List {
        /// The purchase hash.
        hash: String,
    },
    /// Bind a device to a purchase ahead of use (one activation); prints the device hash.
    Add {
        /// The purchase hash.
        hash: String,
        /// The device id, as its player will name it.
        device: String,
        /// The player's user agent, when `token.device_with_user_agent` is on.
        #[arg(long, value_name = "UA")]
        user_agent: Option<String>,
    },
    /// Free the activation a device holds, named by its id or hash; prints the hash freed
    /// (and a note on stderr when its sessions on other nodes may play on).
    Delete {
        /// The purchase hash.
        hash: String,
        /// The device id or hash.
        device: String,
    },
}

/// `usher admin session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Live sessions, one JSON object per line.
    List {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// Only this product.
        #[arg(long)]
        product: Option<String>,
    },
    /// End a session (its next request: 403 session_ended); prints its id.
    End {
        /// The session id.
        sid: String,
    },
}
