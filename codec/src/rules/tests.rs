use proptest::prelude::*;

use super::*;
use crate::contract::CommitMessage;

/// Generated cases per property: enough to hit each boundary (lengths 0, 1, max,
/// max + 1; every byte class) many times over, cheap enough for `make test`.
const CASES: u32 = 2_000;

/// Characters that sit on or next to a rule's edge: the id classes and their
/// neighbours, signs and zeros that number parsers forgive, space, controls, DEL,
/// separators of keys and lists, and non-ASCII text.
const NASTY: &str = "AZaz019_-+ \t\n\r\0\x1b\x7f!~:{},\"\\/%.@`[éß€٣\u{feff}\u{1F3AB}";

/// Strings of up to `max` characters: from [`NASTY`] (short and long), from the id
/// and visible-ASCII classes (so that many are accepted), seat-shaped with signs, zeros
/// and spaces in the number, and three-letter currency-shaped.
fn nasty(max: usize) -> impl Strategy<Value = String> {
    let c = prop_oneof![
        9 => prop::sample::select(NASTY.chars().collect::<Vec<_>>()),
        1 => any::<char>(),
    ];
    let chars = move |len| prop::collection::vec(c.clone(), len).prop_map(String::from_iter);
    let regex = |r: String| proptest::string::string_regex(&r).expect("a valid regex");
    prop_oneof![
        chars(0..=6),
        chars(0..=max),
        regex(format!("[A-Za-z0-9_-]{{0,{max}}}")),
        regex(format!("[!-~]{{0,{max}}}")),
        SEAT_SHAPED,
        "[A-Za-z ]{2,4}",
    ]
}

/// Nearly seat ids: what number parsers forgive (signs, leading zeros, spaces, ten
/// digits) and sections with characters they may not hold.
const SEAT_SHAPED: &str = "[A-Za-z0-9_ :]{0,3}-[-+0 ]{0,2}[0-9]{0,10} ?";

/// The visible-ASCII rules, by characters (not bytes, as the rules read them).
fn visible_ascii(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count()) && s.chars().all(|c| ('!'..='~').contains(&c))
}

fn id_chars(s: &str, max: usize, dash: bool) -> bool {
    (1..=max).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash && c == '-'))
}

fn message() -> CommitMessage {
    CommitMessage {
        v: CommitMessage::VERSION,
        idem: "k-1".into(),
        intent_id: "0123456789abcdef".into(),
        event_id: "demo".into(),
        user_id: "u:1".into(),
        seat_ids: vec!["A-1".into()],
        hold_ids: vec!["fedcba9876543210".into()],
        amount: 1000,
        currency: "KRW".into(),
        accepted_at: 1_700_000_000_000,
    }
}

/// The message, through the queue's JSON and back.
fn through_json(msg: &CommitMessage) -> CommitMessage {
    let json = serde_json::to_vec(msg).expect("encodes");
    serde_json::from_slice(&json).expect("decodes")
}

/// A text field of the commit message: its rule, how to set it, its wire name.
type Field = (
    fn(&str) -> Result<(), Invalid>,
    fn(&mut CommitMessage, &str),
    &'static str,
);

fn fields() -> [(&'static str, Field); 7] {
    [
        (
            "eventId",
            (event_id, |m, s| m.event_id = s.into(), "eventId"),
        ),
        ("userId", (user_id, |m, s| m.user_id = s.into(), "userId")),
        (
            "idem",
            (
                |s| idempotency_key(s.as_bytes()).map(|_| ()),
                |m, s| m.idem = s.into(),
                "Idempotency-Key",
            ),
        ),
        (
            "intentId",
            (intent_id, |m, s| m.intent_id = s.into(), "intentId"),
        ),
        (
            "holdIds",
            (hold_id, |m, s| m.hold_ids = vec![s.into()], "holdId"),
        ),
        (
            "seatIds",
            (
                |s| seat_id(s).map(|_| ()),
                |m, s| m.seat_ids = vec![s.into()],
                "seatId",
            ),
        ),
        (
            "currency",
            (currency, |m, s| m.currency = s.into(), "currency"),
        ),
    ]
}

/// What each rule accepts, said independently of the code under test: by characters,
/// with `char` ranges instead of byte predicates, and the seat id by its grammar.
fn expected(field: &str, s: &str) -> bool {
    match field {
        "eventId" | "intentId" => id_chars(s, 64, true),
        "userId" | "holdIds" => visible_ascii(s, 64),
        "idem" => visible_ascii(s, 255),
        "currency" => s.chars().count() == 3 && s.chars().all(|c| c.is_ascii_uppercase()),
        "seatIds" => match s.split_once('-') {
            Some((section, n)) => {
                id_chars(section, 64, false)
                    && (1..=9).contains(&n.chars().count())
                    && n.chars().all(|c| c.is_ascii_digit())
                    && !n.starts_with('0')
            }
            None => false,
        },
        other => panic!("no field {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Every rule over generated strings: accepted exactly when the independent
    /// statement says so; accepted values go through the commit message's JSON
    /// unchanged; refused ones name their field.
    #[test]
    fn each_text_rule_accepts_what_it_says_and_names_its_field(s in nasty(80), pick in 0..7usize) {
        let (name, (rule, set, wire)) = fields()[pick];
        match rule(&s) {
            Ok(()) => {
                prop_assert!(expected(name, &s), "{name} accepted {s:?}");
                let mut msg = message();
                set(&mut msg, &s);
                prop_assert_eq!(through_json(&msg), msg);
            }
            Err(e) => {
                prop_assert!(!expected(name, &s), "{name} refused {s:?}");
                prop_assert_eq!(e.field, wire);
                prop_assert!(!e.rule.is_empty());
            }
        }
    }

    /// Long values around the 255 bound of the Idempotency-Key.
    #[test]
    fn idempotency_keys_up_to_255_visible_characters(s in "[ -~]{0,260}") {
        prop_assert_eq!(idempotency_key(s.as_bytes()).is_ok(), visible_ascii(&s, 255));
        if let Ok(text) = idempotency_key(s.as_bytes()) {
            prop_assert_eq!(text, s.as_str());
        }
    }

    /// Request ids keep the edge's rule: 1..=128 visible ASCII, given back unchanged.
    #[test]
    fn request_ids_up_to_128_visible_characters(s in nasty(140)) {
        match request_id(s.as_bytes()) {
            Ok(text) => {
                prop_assert!(visible_ascii(&s, 128));
                prop_assert_eq!(text, s.as_str());
            }
            Err(e) => {
                prop_assert!(!visible_ascii(&s, 128));
                prop_assert_eq!(e.field, "x-request-id");
            }
        }
    }

    /// Seat ids have one spelling: every accepted id is `{section}-{n}` written back
    /// from its parts, and every section and number in range makes one.
    #[test]
    fn seat_ids_are_canonical(section in "[A-Za-z0-9_]{1,64}", n in 1..=SEAT_NUMBER_MAX) {
        let id = format!("{section}-{n}");
        prop_assert_eq!(seat_id(&id), Ok(Seat { section: &section, n }));
        let mut msg = message();
        msg.seat_ids = vec![id.clone()];
        prop_assert_eq!(&through_json(&msg).seat_ids[0], &id);
        for other in [format!("{section}-0{n}"), format!("{section}-+{n}"),
                      format!("{section}-{n} "), format!("{section}-{}", u64::from(n) + 1_000_000_000)] {
            prop_assert_eq!(seat_id(&other).map_err(|e| e.field), Err("seatId"), "{}", other);
        }
    }

    #[test]
    fn seat_ids_read_back_as_written(s in SEAT_SHAPED) {
        if let Ok(seat) = seat_id(&s) {
            prop_assert_eq!(format!("{}-{}", seat.section, seat.n), s);
        }
    }

    /// Amounts: up to what `cjson` writes exactly, nothing above it.
    #[test]
    fn amounts_fit_bigint(n in any::<u64>()) {
        match amount(n) {
            Ok(v) => {
                prop_assert!(n <= AMOUNT_MAX);
                prop_assert_eq!(v as u64, n);
                let mut msg = message();
                msg.amount = n;
                prop_assert_eq!(through_json(&msg).amount, n);
            }
            Err(e) => {
                prop_assert!(n > AMOUNT_MAX);
                prop_assert_eq!(e.field, "amount");
            }
        }
    }

    #[test]
    fn counts_of_seats(order in 0..=200usize, section in any::<u32>()) {
        prop_assert_eq!(order_seats(order).is_ok(), (1..=100).contains(&order));
        prop_assert_eq!(section_seats(section).is_ok(), (1..=10_000_000).contains(&section));
    }
}

#[test]
fn edge_cases() {
    for (id, ok) in [
        ("A-1", true),
        ("VIP_2-17", true),
        ("A-999999999", true),
        ("A-1000000000", false),
        ("A-4294967295", false),
        ("A-+1", false),
        ("A-01", false),
        ("A-0", false),
        ("A--1", false),
        ("A-1-2", false),
        ("A-", false),
        ("-1", false),
        ("A1", false),
        ("A-1 ", false),
        (" A-1", false),
        ("A-1\n", false),
        ("A-١", false), // an Arabic-Indic digit, which some parsers read as 1
        ("A:B-1", false),
    ] {
        assert_eq!(seat_id(id).is_ok(), ok, "{id}");
    }
    let section = "S".repeat(64);
    assert!(seat_id(&format!("{section}-1")).is_ok());
    assert!(seat_id(&format!("S{section}-1")).is_err());

    let user = "u".repeat(64);
    assert_eq!(user_id(&user), Ok(()));
    assert_eq!(
        user_id(&format!("{user}u")).map_err(|e| e.field),
        Err("userId")
    );
    for bad in ["", "a b", "a\u{7f}", "a\0", "é", "\t"] {
        assert!(user_id(bad).is_err(), "{bad:?}");
    }
    assert_eq!(pow_nonce(&"n".repeat(64)), Ok(()));
    assert_eq!(pow_challenge(&"c".repeat(256)), Ok(()));
    assert_eq!(
        pow_nonce(&"n".repeat(65)).map_err(|e| e.field),
        Err("nonce")
    );
    assert_eq!(
        pow_challenge(&"c".repeat(257)).map_err(|e| e.field),
        Err("challenge")
    );
    for bad in ["", "a b", "é"] {
        assert!(
            pow_nonce(bad).is_err() && pow_challenge(bad).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(idempotency_key(b"k-1"), Ok("k-1"));
    assert!(idempotency_key(&[b'k'; 256]).is_err());
    assert!(idempotency_key(b"\xff").is_err());
    assert_eq!(currency("KRW"), Ok(()));
    for bad in ["krw", "KR", "KRWW", "KR ", "KRW ", "K1W", ""] {
        assert!(currency(bad).is_err(), "{bad:?}");
    }
    assert_eq!(amount(AMOUNT_MAX), Ok(99_999_999_999_999));
    assert!(amount(AMOUNT_MAX + 1).is_err());
    assert_eq!(
        seat_id("A-01").expect_err("refused").to_string(),
        "seatId must be {section}-{n}: a section of 1 to 64 of A-Z a-z 0-9 _, then n from 1 to 999999999 without sign or leading zero"
    );
    assert_eq!(
        idempotency_key(b"").map_err(|e| e.named("idem").to_string()),
        Err("idem must be 1 to 255 visible ASCII characters".into())
    );
}

/// The admission fields: the rules' edges, and a request carrying a refused value does
/// not deserialize as data (what the edge answers 400 INVALID_FIELD). The mutation
/// fuzzer found `openAtMs` 2^63 answered 500 and 10^18 stored as `1e+18`, which the edge
/// read as "open since 1970".
#[test]
fn admission_fields_stay_where_lua_keeps_them_integers() {
    use crate::contract::AdmissionRequest;
    assert_eq!(epoch_ms(0), Ok(()));
    assert_eq!(epoch_ms(EPOCH_MS_MAX), Ok(()));
    assert_eq!(
        epoch_ms(EPOCH_MS_MAX + 1).map_err(|e| e.field),
        Err("openAtMs")
    );
    assert_eq!(admission_rate(1), Ok(()));
    assert_eq!(admission_rate(ADMISSION_RATE_MAX), Ok(()));
    for bad in [0, ADMISSION_RATE_MAX + 1, u64::MAX] {
        assert_eq!(
            admission_rate(bad).map_err(|e| e.field),
            Err("rate"),
            "{bad}"
        );
    }
    // Lua prints numbers with 17 significant digits: every accepted time, and what the
    // script derives from it, must print as an integer.
    assert!(EPOCH_MS_MAX < 10u64.pow(17));
    // Admitted so far: (now - opening) / 1000 * rate, from 1970 to 2200 at the most.
    let ms_to_2200 = 7_258_118_400_000u64;
    assert!(ms_to_2200 / 1000 * ADMISSION_RATE_MAX < 10u64.pow(17));

    let parse = |body: &str| serde_json::from_str::<AdmissionRequest>(body);
    for ok in [
        "{}",
        r#"{"openAtMs":0,"rate":1}"#,
        r#"{"openAtMs":253402300799999,"rate":10000000}"#,
        r#"{"rate":2000}"#,
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        r#"{"openAtMs":null}"#,
        r#"{"openAtMs":9223372036854775808}"#,
        r#"{"openAtMs":1796291000000000000}"#,
        r#"{"openAtMs":253402300800000}"#,
        r#"{"rate":0}"#,
        r#"{"rate":9223372036854775807,"openAtMs":1000}"#,
        r#"{"openAtMs":-1}"#,
    ] {
        let e = parse(bad).expect_err(bad);
        assert_eq!(e.classify(), serde_json::error::Category::Data, "{bad}");
    }
}
