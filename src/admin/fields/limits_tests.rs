//! Clearing limits (`0`, `null`, JSON `null`, `device_ban=0`) and `subscription_type`
//! (issue 11 item 6).

use super::tests::{blank_product, fields};
use super::*;

#[test]
fn item6_zero_null_and_json_null_lift_limits_and_device_ban_0_clears() {
    let mut p = blank_product();
    p.max_devices = Some(1);
    p.max_sessions = Some(2);
    p.activations = Some(3);
    for (field, value) in [
        ("device_ban", "0"),
        ("device_ban", "null"),
        ("device_ban", NULL),
    ] {
        let mut q = p.clone();
        let f = fields(&[("name", "x"), (field, value)]);
        apply_product(&mut Reader::new(&f), &mut q).unwrap();
        assert_eq!(q.max_devices, None, "{field}={value:?}");
    }
    let f = from_json(&serde_json::json!({"name": "x", "max_sessions": null, "activation": 0}))
        .unwrap();
    let mut r = Reader::new(&f);
    apply_product(&mut r, &mut p).unwrap();
    r.finish(&[]).unwrap();
    assert_eq!((p.max_sessions, p.activations), (None, None));
    let f = fields(&[("name", "x"), ("device_ban", "1"), ("max_devices", "4")]);
    apply_product(&mut Reader::new(&f), &mut p).unwrap();
    assert_eq!(p.max_devices, Some(4), "an explicit max_devices wins");
    let f = from_json(&serde_json::json!({"name": null, "ip_recovery": null})).unwrap();
    let mut kept = blank_product();
    kept.name = "kept".into();
    apply_product(&mut Reader::new(&f), &mut kept).unwrap();
    assert_eq!(kept.name, "kept", "null leaves a text field alone");
    kept.ip_recovery = true;
    apply_product(&mut Reader::new(&f), &mut kept).unwrap();
    assert!(kept.ip_recovery, "and a flag");
}

#[test]
fn item6_subscription_type_subscription_only() {
    let ok = fields(&[("name", "x"), ("subscription_type", "subscription")]);
    apply_product(&mut Reader::new(&ok), &mut blank_product()).unwrap();
    for (field, value) in [
        ("subscription_type", "password"),
        ("subscription_type", "collection"),
        ("subscription_type", "other"),
        ("collection_type", "protect"),
    ] {
        let f = fields(&[("name", "x"), (field, value)]);
        let got = apply_product(&mut Reader::new(&f), &mut blank_product()).unwrap_err();
        assert_eq!(got.field, field, "{value}");
    }
}
