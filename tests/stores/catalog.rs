//! The store contract for the catalog, on both backends: unique codes and prefixes,
//! entitlements through media and editorial links, the products holding a media, listing
//! filters and pages, accounts and contacts, a product with buyers kept unless a delete
//! is forced, a media its buyers named (or the last media of a product with buyers) kept
//! in its product unless the unlink is, and a sale of a media taken out after its check
//! refused in the sale's own transaction.

use usher::rights::model::{Account, Contacts, PurchaseStatus};
use usher::rights::store::{Page, PurchaseFilter, Store, StoreError};

use crate::{media, on_both, product, purchase};

fn codes_and_prefixes_are_unique(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    assert!(matches!(
        store.create_product(&product("P1")),
        Err(StoreError::Conflict(_))
    ));
    store.create_media(&media("m1", "/a/", None)).unwrap();
    assert!(matches!(
        store.create_media(&media("m2", "/a/", None)),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.update_product(&product("nope")),
        Err(StoreError::NotFound(_))
    ));
}

fn a_purchase_of_a_missing_product_is_not_found_and_writes_nothing(store: &dyn Store) {
    let got = store.create_purchase(&purchase("h1", "ghost", "alice", "a@x"));
    assert_eq!(got, Err(StoreError::NotFound("product ghost".into())));
    assert_eq!(
        store.account("alice").unwrap(),
        None,
        "no account half-written"
    );
}

fn entitlements_follow_media_and_editorial_links(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store.create_product(&product("P2")).unwrap();
    store
        .create_media(&media("final-4k", "/final/4k/", Some("final")))
        .unwrap();
    store
        .create_media(&media("final-hd", "/final/hd/", Some("final")))
        .unwrap();
    store.link("P1", "final").unwrap();
    store.link("P2", "final-hd").unwrap();
    store.link("P2", "final-hd").unwrap(); // idempotent
    assert!(matches!(
        store.link("ghost", "x"),
        Err(StoreError::NotFound(_))
    ));
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    store
        .create_purchase(&purchase("h2", "P2", "bob", "b@x"))
        .unwrap();
    assert!(store.account("alice").unwrap().unwrap().enabled);

    let alice_4k = store
        .entitlements("alice", &["final-4k".into(), "final".into()])
        .unwrap();
    assert_eq!(alice_4k.len(), 1, "the editorial right covers 4K");
    assert_eq!(alice_4k[0].0.hash, "h1");
    let bob_4k = store
        .entitlements("bob", &["final-4k".into(), "final".into()])
        .unwrap();
    assert!(bob_4k.is_empty(), "bob bought HD only");
    assert_eq!(
        store
            .entitlements("bob", &["final-hd".into(), "final".into()])
            .unwrap()
            .len(),
        1
    );

    // Bob bought the whole product, and final-hd is all it has: the unlink that leaves
    // him nothing is held until forced.
    assert!(matches!(
        store.unlink("P2", "final-hd", false),
        Err(StoreError::Held { buyers: 1, .. })
    ));
    store.unlink("P2", "final-hd", true).unwrap();
    assert!(store
        .entitlements("bob", &["final-hd".into(), "final".into()])
        .unwrap()
        .is_empty());
    store.delete_product("P1", true).unwrap();
    assert_eq!(
        store.purchase("h1").unwrap(),
        None,
        "purchases go with their product"
    );
}

/// The products that sell a media (`sendVideoTicket.php`), found however many products
/// stand before them: by the media's code or by its editorial id, in list order.
fn the_products_holding_a_media_are_found_past_any_page(store: &dyn Store) {
    for n in 0..=Page::MAX_LIMIT {
        store.create_product(&product(&format!("P{n:04}"))).unwrap();
    }
    store.link("P1000", "final").unwrap();
    store.link("P0003", "final-hd").unwrap();
    store.link("P0004", "other").unwrap();
    let codes = |content: &str, editorial: &str| -> Vec<String> {
        let found = store.products_holding(content, editorial).unwrap();
        found.into_iter().map(|p| p.code).collect()
    };
    assert_eq!(codes("final-hd", "final"), ["P0003", "P1000"]);
    assert_eq!(codes("final", "final"), ["P1000"]);
    assert!(codes("nothing", "nothing").is_empty());
}

fn listing_filters_and_pages(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    for n in 0..5 {
        let mut p = purchase(
            &format!("h{n}"),
            "P1",
            &format!("acct{n}"),
            "same@example.com",
        );
        p.purchased_at = 100 + n;
        store.create_purchase(&p).unwrap();
    }
    let by_email = PurchaseFilter {
        email: Some("SAME@example.com".into()),
        ..PurchaseFilter::default()
    };
    assert_eq!(
        store.purchases(&by_email, Page::default()).unwrap().len(),
        5,
        "email is not unique"
    );
    let page = store
        .purchases(
            &by_email,
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!(
        page.iter().map(|p| p.hash.as_str()).collect::<Vec<_>>(),
        ["h1", "h2"]
    );
    let before = store.purchase("h3").unwrap().unwrap();
    let mut revoked = before.clone();
    revoked.status = PurchaseStatus::Revoked;
    store.replace_purchase(&before, &revoked, &[]).unwrap();
    let only_revoked = PurchaseFilter {
        status: Some(PurchaseStatus::Revoked),
        ..PurchaseFilter::default()
    };
    assert_eq!(
        store.purchases(&only_revoked, Page::default()).unwrap(),
        vec![revoked]
    );
}

fn accounts_and_contacts(store: &dyn Store) {
    store
        .put_account(&Account {
            id: "a".into(),
            enabled: false,
            max_sessions: Some(2),
            max_devices: None,
        })
        .unwrap();
    let account = store.account("a").unwrap().unwrap();
    assert_eq!(store.accounts().unwrap(), vec![account.clone()]);
    assert!(!account.enabled);
    assert_eq!(account.max_sessions, Some(2));
    assert_eq!(store.contacts().unwrap(), Contacts::default());
    let c = Contacts {
        name: "Alex".into(),
        phone: "+0 000".into(),
        ..Contacts::default()
    };
    store.put_contacts(&c).unwrap();
    assert_eq!(store.contacts().unwrap(), c);
}

/// A product its buyers hold is kept unless the delete is forced.
fn a_product_with_buyers_is_kept_unless_forced(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    let got = store.delete_product("P1", false);
    assert!(
        matches!(&got, Err(StoreError::Held { buyers: 1, .. })),
        "{got:?}"
    );
    assert!(store.purchase("h1").unwrap().is_some(), "the buyer kept it");
    let before = store.purchase("h1").unwrap().unwrap();
    let mut revoked = before.clone();
    revoked.status = PurchaseStatus::Revoked;
    store.replace_purchase(&before, &revoked, &[]).unwrap();
    store.delete_product("P1", false).unwrap();
    assert_eq!(store.product("P1").unwrap(), None);
    let gone = store.delete_product("P1", false);
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
}

/// Product P1 linking media M1 by its code and media M2 (`/m2/`) by its editorial id `ed`.
fn p1_linking_m1_and_the_editorial_id_of_m2(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store.create_media(&media("M1", "/m1/", None)).unwrap();
    store
        .create_media(&media("M2", "/m2/", Some("ed")))
        .unwrap();
    store.link("P1", "M1").unwrap();
    store.link("P1", "ed").unwrap();
}

/// A media that active buyers of the product named (by its code, or through the editorial
/// id linked) stays in the product unless the unlink is forced; buyers of the whole
/// product and revoked ones do not hold it.
fn a_media_its_buyers_named_stays_in_its_product_unless_forced(store: &dyn Store) {
    p1_linking_m1_and_the_editorial_id_of_m2(store);
    let named = |hash: &str, account: &str, media: Option<&str>| {
        let mut p = purchase(hash, "P1", account, "a@x");
        p.media = media.map(Into::into);
        store.create_purchase(&p).unwrap();
    };
    named("h1", "alice", Some("M1"));
    named("h2", "bob", None);
    named("h3", "carol", Some("M1"));
    named("h4", "dan", Some("M2"));
    let revoke = |hash: &str| {
        let before = store.purchase(hash).unwrap().unwrap();
        let mut revoked = before.clone();
        revoked.status = PurchaseStatus::Revoked;
        store.replace_purchase(&before, &revoked, &[]).unwrap();
    };
    revoke("h3");

    let got = store.unlink("P1", "M1", false);
    assert!(
        matches!(&got, Err(StoreError::Held { buyers: 1, .. })),
        "alice's, not bob's nor carol's: {got:?}"
    );
    let got = store.unlink("P1", "ed", false);
    assert!(
        matches!(&got, Err(StoreError::Held { buyers: 1, .. })),
        "dan bought M2, which the editorial id brings: {got:?}"
    );
    assert_eq!(
        store.linked("P1").unwrap(),
        ["M1", "ed"],
        "nothing unlinked"
    );

    revoke("h1");
    store.unlink("P1", "M1", false).unwrap();
    store.unlink("P1", "ed", true).unwrap();
    assert!(store.linked("P1").unwrap().is_empty(), "forced, it goes");
    assert!(
        store.purchase("h4").unwrap().is_some(),
        "the purchase stands"
    );
    let gone = store.unlink("P1", "ed", false);
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
}

/// The last media of a product is held by every active buyer of it, whole-product ones
/// included (the unlink would leave them nothing); while other media remain, a
/// whole-product buyer does not hold one.
fn the_last_media_of_a_product_is_held_by_its_whole_product_buyers(store: &dyn Store) {
    store.create_product(&product("P1")).unwrap();
    store.create_media(&media("M1", "/m1/", None)).unwrap();
    store.create_media(&media("M2", "/m2/", None)).unwrap();
    store.link("P1", "M1").unwrap();
    store.link("P1", "M2").unwrap();
    store
        .create_purchase(&purchase("h1", "P1", "alice", "a@x"))
        .unwrap();
    assert_eq!(store.unlink_buyers("P1", "M1").unwrap(), 0);
    store.unlink("P1", "M1", false).unwrap();
    assert_eq!(store.unlink_buyers("P1", "M1").unwrap(), 0, "not linked");
    assert_eq!(store.unlink_buyers("P1", "M2").unwrap(), 1);

    let got = store.unlink("P1", "M2", false);
    assert!(
        matches!(&got, Err(StoreError::Held { buyers: 1, .. })),
        "alice bought the whole product, and M2 is all it has left: {got:?}"
    );
    assert_eq!(store.linked("P1").unwrap(), ["M2"], "nothing unlinked");
    store.unlink("P1", "M2", true).unwrap();
    assert!(store.linked("P1").unwrap().is_empty(), "forced, it goes");
}

/// A sale of one media checked against the product's links, then the media taken out,
/// then the sale recorded: the sale's own transaction finds the link gone and writes
/// nothing. Recorded while the link stands (here through the editorial id that covers
/// the media), it lands.
fn a_sale_of_a_media_taken_out_after_its_check_is_refused(store: &dyn Store) {
    p1_linking_m1_and_the_editorial_id_of_m2(store);
    let sale = |hash: &str, media: &str| {
        let mut p = purchase(hash, "P1", "alice", "a@x");
        p.media = Some(media.into());
        p
    };
    assert!(store.linked("P1").unwrap().contains(&"M1".to_owned()));
    store.unlink("P1", "M1", false).unwrap();
    let got = store.record_sale(
        &sale("h1", "M1"),
        Some(("order-1", "fp")),
        &[],
        &["M1".into()],
    );
    assert!(
        matches!(&got, Err(StoreError::NotInProduct { product, media }) if product == "P1" && media == "M1"),
        "{got:?}"
    );
    assert!(store.purchase("h1").unwrap().is_none(), "nothing written");
    assert!(store.sale_key("order-1").unwrap().is_none(), "nor its key");

    let within = ["M2".to_owned(), "ed".to_owned()];
    store
        .record_sale(&sale("h2", "M2"), None, &[], &within)
        .unwrap();
    assert!(store.purchase("h2").unwrap().is_some());
}

#[test]
fn both_the_last_media_of_a_product_is_held_by_its_whole_product_buyers() {
    on_both(
        "last_media_held",
        the_last_media_of_a_product_is_held_by_its_whole_product_buyers,
    );
}

#[test]
fn both_a_sale_of_a_media_taken_out_after_its_check_is_refused() {
    on_both(
        "sale_after_unlink",
        a_sale_of_a_media_taken_out_after_its_check_is_refused,
    );
}

#[test]
fn both_a_media_its_buyers_named_stays_in_its_product_unless_forced() {
    on_both(
        "media_link_held",
        a_media_its_buyers_named_stays_in_its_product_unless_forced,
    );
}

#[test]
fn both_a_product_with_buyers_is_kept_unless_forced() {
    on_both("product_held", a_product_with_buyers_is_kept_unless_forced);
}

#[test]
fn both_codes_and_prefixes_are_unique() {
    on_both(
        "codes_and_prefixes_are_unique",
        codes_and_prefixes_are_unique,
    );
}

#[test]
fn both_a_purchase_of_a_missing_product_is_not_found_and_writes_nothing() {
    on_both(
        "a_purchase_of_a_missing_product_is_not_found_and_writes_noth",
        a_purchase_of_a_missing_product_is_not_found_and_writes_nothing,
    );
}

#[test]
fn both_entitlements_follow_media_and_editorial_links() {
    on_both(
        "entitlements_follow_media_and_editorial_links",
        entitlements_follow_media_and_editorial_links,
    );
}

#[test]
fn both_the_products_holding_a_media_are_found_past_any_page() {
    on_both(
        "products_holding_a_media",
        the_products_holding_a_media_are_found_past_any_page,
    );
}

#[test]
fn both_listing_filters_and_pages() {
    on_both("listing_filters_and_pages", listing_filters_and_pages);
}

#[test]
fn both_accounts_and_contacts() {
    on_both("accounts_and_contacts", accounts_and_contacts);
}
