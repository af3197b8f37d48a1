//! What decoding attacker JSON may cost: the value count is bounded before any tree is
//! built (text of zeros in an array would take 16 times its size as values).

use proof_kit::canonical::{Json, MAX_VALUES};

fn zeros(n: usize) -> Vec<u8> {
    let mut text = b"{\"x\":[".to_vec();
    for i in 0..n {
        if i > 0 {
            text.push(b',');
        }
        text.push(b'0');
    }
    text.extend_from_slice(b"]}");
    text
}

#[test]
fn json_of_more_values_than_the_bound_is_refused_before_it_is_decoded() {
    // `{` `:` `[` and one per `,`: MAX_VALUES - 3 zeros make exactly MAX_VALUES.
    assert!(Json::parse(&zeros(MAX_VALUES - 3)).is_ok());
    let err = Json::parse(&zeros(MAX_VALUES - 2)).expect_err("one value too many");
    assert!(
        err.to_string().contains("more than 1000000 JSON values"),
        "{err}"
    );
    // Commas, colons and brackets inside strings are text, not values.
    let text = format!("{{\"x\":\"{}\"}}", ",:[{".repeat(MAX_VALUES));
    assert!(Json::parse(text.as_bytes()).is_ok());
    // An escaped quote does not end the string.
    let text = format!("{{\"x\":\"\\\"{}\"}}", ",".repeat(MAX_VALUES));
    assert!(Json::parse(text.as_bytes()).is_ok());
}
