//! Unit tests of the field readers.

use super::*;

pub(super) fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn blank_product() -> Product {
    serde_json::from_value(serde_json::json!({"code": "P", "name": ""})).unwrap()
}

#[test]
fn product_fields_become_the_model() {
    let f = fields(&[
        ("name", "Final"),
        ("type", "group"),
        ("cost", "100.00"),
        ("period", "1"),
        ("access_expire", "2018-12-31"),
        ("device_ban", "1"),
        ("device_classes", "ott, iptv"),
    ]);
    let mut r = Reader::new(&f);
    let mut p = blank_product();
    apply_product(&mut r, &mut p).unwrap();
    r.finish(&[]).unwrap();
    assert_eq!(p.kind, ProductType::Group);
    assert_eq!(p.cost.as_deref(), Some("100.00"));
    assert_eq!(p.period_days, Some(1));
    assert_eq!(p.access_expire, Some(1_546_300_799));
    assert_eq!(p.max_devices, Some(1));
    assert_eq!(p.device_classes, vec![DeviceClass::Ott, DeviceClass::Iptv]);
}

#[test]
fn each_bad_field_is_named() {
    for (field, value) in [
        ("type", "triple"),
        ("cost", "free"),
        ("period", "-1"),
        ("access_start", "31/12/2018"),
        ("device_classes", "fridge"),
        ("currency", "euro"),
    ] {
        let f = fields(&[("name", "x"), (field, value)]);
        let got = apply_product(&mut Reader::new(&f), &mut blank_product()).unwrap_err();
        assert_eq!(got.field, field, "{value}");
    }
    let f = fields(&[("name", "x"), ("colour", "red")]);
    let mut r = Reader::new(&f);
    apply_product(&mut r, &mut blank_product()).unwrap();
    assert_eq!(r.finish(&[]).unwrap_err().field, "colour");
}

#[test]
fn json_values_become_fields() {
    let f = from_json(
        &serde_json::json!({"period": 3, "ip_recovery": true, "device_classes": ["ott"]}),
    )
    .unwrap();
    assert_eq!(f["period"], "3");
    assert_eq!(f["ip_recovery"], "true");
    assert_eq!(f["device_classes"], "ott");
    assert!(from_json(&serde_json::json!([1])).is_err());
}

#[test]
fn media_prefix_must_be_normalised() {
    for bad in ["/a/../b/", "a/", "/a", "/"] {
        let f = fields(&[("prefix", bad)]);
        assert_eq!(
            media(&mut Reader::new(&f), "m".into(), 0)
                .unwrap_err()
                .field,
            "prefix",
            "{bad}"
        );
    }
    let f = fields(&[
        ("prefix", "/events/final/"),
        ("editorial", "final"),
        ("live", "1"),
    ]);
    let m = media(&mut Reader::new(&f), "m".into(), 0).unwrap();
    assert!(m.live);
    assert_eq!(m.editorial.as_deref(), Some("final"));
}

#[test]
fn unix_seconds_end_where_date_texts_do() {
    assert_eq!(
        crate::rights::date::parse("9999-12-31 23:59:59", Edge::End),
        Ok(LATEST)
    );
    assert_eq!(time(&LATEST.to_string(), Edge::End, LATEST), Ok(LATEST));
    assert!(time(&(LATEST + 1).to_string(), Edge::End, LATEST).is_err());
    assert!(time("-1", Edge::Start, u64::MAX).is_err());
    assert!(time("+-1", Edge::Start, u64::MAX).is_err());
    // A leading `+`, as `u64::from_str` has always taken it.
    assert_eq!(time("+1700000000", Edge::Start, LATEST), Ok(1_700_000_000));
    let too_late = time("18446744073709551616", Edge::Start, u64::MAX).unwrap_err();
    assert!(!too_late.contains("9999"), "{too_late}");
    // A filter's `since` may lie past any stored time (it selects nothing).
    let f = fields(&[("since", "18446744073709551615")]);
    assert_eq!(Reader::new(&f).since("since"), Ok(Some(u64::MAX)));
}
