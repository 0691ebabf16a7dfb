//! The wire's rules, parsed from a spec such as `delay=20ms loss=5% seed=7`.
//!
//! Words are separated by whitespace; each is `key=value` or a bare
//! scenario rule. An error names the word that is wrong and says what was expected.

use std::fmt;

use super::Direction;

/// Everything the wire does to the segments passing through it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Extra one-way delay for every packet, in ns (`delay=20ms`).
    pub delay_ns: u64,
    /// Probability of losing a TCP segment, in parts per million (`loss=5%`).
    pub loss_ppm: u32,
    /// Probability of holding a TCP segment back behind the next one of its direction
    /// (`reorder=1%`).
    pub reorder_ppm: u32,
    /// Probability of sending a TCP segment twice (`dup=1%`).
    pub dup_ppm: u32,
    /// Seed of the pseudo-random choices (`seed=7`); the same seed and the same
    /// segments give the same choices.
    pub seed: u64,
    /// Hold the first FIN until a FIN exists in each direction, then release both:
    /// a simultaneous close (`hold-first-fin`). Segments after the held FIN in its
    /// direction wait behind it, its retransmissions are dropped; if the other side
    /// never closes, it stays held until the wire stops.
    pub hold_first_fin: bool,
    /// Hold the first SYN until a SYN exists in each direction, then release both:
    /// a simultaneous open (`hold-syn`). Only for experiments where both hosts
    /// connect(): a lone SYN stays held (its retransmissions dropped) until the wire
    /// stops, and its connect() times out.
    pub hold_syn: bool,
    /// Lose the client's ACK that completes the handshake, every copy of it (the
    /// re-ACKs of retransmitted SYN,ACKs too), so the server's request socket stays in
    /// SYN_RECV (`drop-third-ack`). A segment carrying data passes and completes it.
    pub drop_third_ack: bool,
    /// Drop the n-th TCP segment (1-based, retransmissions counted) of a direction
    /// (`drop=3`, `drop=c:3`, `drop=s:2`; a bare number means client to server).
    pub drop_nth: Vec<(Direction, u64)>,
    /// The cable is cut after this many TCP segments (both directions counted):
    /// every later one is lost (`cut=3`: after the handshake). A peer that goes
    /// silent, for keepalive and retransmission timeouts.
    pub cut_after: Option<u64>,
}

/// The seed used when the spec gives none, so that even an unseeded run repeats.
pub const DEFAULT_SEED: u64 = 1;

/// A word of a wire spec that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wire rule '{word}': {why}")]
pub struct SpecError {
    /// The offending word, as written.
    pub word: String,
    /// What was expected instead.
    pub why: String,
}

/// The words a spec understands, for error messages and help text.
pub const WORDS: &str = "delay=DURATION loss=P% reorder=P% dup=P% seed=N drop=[c:|s:]N \
                         cut=N hold-first-fin hold-syn drop-third-ack";

impl Rules {
    /// Parses a spec: whitespace-separated words (see [`WORDS`]). The empty spec is a
    /// perfect wire.
    pub fn parse(spec: &str) -> Result<Rules, SpecError> {
        let mut rules = Rules {
            seed: DEFAULT_SEED,
            ..Rules::default()
        };
        for word in spec.split_whitespace() {
            let bad = |why: &str| SpecError {
                word: word.to_string(),
                why: why.to_string(),
            };
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            match (key, value) {
                ("hold-first-fin", None) => rules.hold_first_fin = true,
                ("hold-syn", None) => rules.hold_syn = true,
                ("drop-third-ack", None) => rules.drop_third_ack = true,
                ("delay", Some(v)) => rules.delay_ns = duration_ns(v).map_err(|e| bad(&e))?,
                ("loss", Some(v)) => rules.loss_ppm = percent_ppm(v).map_err(|e| bad(&e))?,
                ("reorder", Some(v)) => rules.reorder_ppm = percent_ppm(v).map_err(|e| bad(&e))?,
                ("dup", Some(v)) => rules.dup_ppm = percent_ppm(v).map_err(|e| bad(&e))?,
                ("seed", Some(v)) => {
                    rules.seed = v
                        .parse()
                        .map_err(|_| bad("the seed is a whole number, e.g. seed=7"))?;
                }
                ("drop", Some(v)) => {
                    let (dir, n) = match v.split_once(':') {
                        Some(("c", n)) => (Direction::ClientToServer, n),
                        Some(("s", n)) => (Direction::ServerToClient, n),
                        Some(_) => return Err(bad("the direction is c: or s:, e.g. drop=s:2")),
                        None => (Direction::ClientToServer, v),
                    };
                    let n: u64 = n
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad("N counts segments from 1, e.g. drop=3"))?;
                    rules.drop_nth.push((dir, n));
                }
                ("cut", Some(v)) => {
                    rules.cut_after = Some(v.parse().map_err(|_| {
                        bad("N is how many segments pass before the cut, e.g. cut=3")
                    })?);
                }
                ("hold-first-fin" | "hold-syn" | "drop-third-ack", Some(_)) => {
                    return Err(bad("this rule takes no value"));
                }
                ("delay" | "loss" | "reorder" | "dup" | "seed" | "drop" | "cut", None) => {
                    return Err(bad("this rule needs a value, e.g. delay=20ms loss=5%"));
                }
                _ => return Err(bad(&format!("unknown rule; the wire understands {WORDS}"))),
            }
        }
        Ok(rules)
    }

    /// True when the wire changes nothing.
    pub fn is_perfect(&self) -> bool {
        *self
            == Rules {
                seed: self.seed,
                ..Rules::default()
            }
    }
}

impl std::str::FromStr for Rules {
    type Err = SpecError;

    /// [`Rules::parse`], so `--wire SPEC` can be a clap argument of type `Rules`.
    fn from_str(spec: &str) -> Result<Rules, SpecError> {
        Rules::parse(spec)
    }
}

impl fmt::Display for Rules {
    /// The canonical spec, which parses back to the same rules.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if self.delay_ns > 0 {
            words.push(format!("delay={}us", self.delay_ns / 1000));
        }
        for (key, ppm) in [
            ("loss", self.loss_ppm),
            ("reorder", self.reorder_ppm),
            ("dup", self.dup_ppm),
        ] {
            if ppm > 0 {
                words.push(format!("{key}={}%", f64::from(ppm) / 10_000.0));
            }
        }
        words.push(format!("seed={}", self.seed));
        for (flag, word) in [
            (self.hold_first_fin, "hold-first-fin"),
            (self.hold_syn, "hold-syn"),
            (self.drop_third_ack, "drop-third-ack"),
        ] {
            if flag {
                words.push(word.to_string());
            }
        }
        for (dir, n) in &self.drop_nth {
            let d = match dir {
                Direction::ClientToServer => "c",
                Direction::ServerToClient => "s",
            };
            words.push(format!("drop={d}:{n}"));
        }
        if let Some(n) = self.cut_after {
            words.push(format!("cut={n}"));
        }
        f.write_str(&words.join(" "))
    }
}

/// `20ms`, `1.5s`, `300us`, `100ns` → ns.
fn duration_ns(v: &str) -> Result<u64, String> {
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or("a duration needs a unit: ns, us, ms or s (e.g. delay=20ms)")?;
    let (number, unit) = v.split_at(split);
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return Err(format!("unknown unit '{unit}': use ns, us, ms or s")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{number}' is not a number"))?;
    let ns = n * scale;
    // A minute of one-way delay is already far beyond any TCP experiment.
    if !(0.0..=60e9).contains(&ns) {
        return Err("a delay is between 0 and 60s".to_string());
    }
    Ok(ns.round() as u64)
}

/// `5%`, `0.5%` → parts per million.
fn percent_ppm(v: &str) -> Result<u32, String> {
    let number = v
        .strip_suffix('%')
        .ok_or("a probability is written as a percentage, e.g. 5%")?;
    let p: f64 = number
        .parse()
        .map_err(|_| format!("'{number}' is not a number"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err("a percentage is between 0% and 100%".to_string());
    }
    Ok((p * 10_000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_example() {
        let r = Rules::parse("delay=20ms loss=5% seed=7").unwrap();
        assert_eq!(r.delay_ns, 20_000_000);
        assert_eq!(r.loss_ppm, 50_000);
        assert_eq!(r.seed, 7);
        assert!(!r.is_perfect());
    }

    #[test]
    fn parses_scenario_rules_and_drops() {
        let r = Rules::parse(
            "hold-first-fin hold-syn drop-third-ack drop=3 drop=s:2 reorder=1% dup=0.5% cut=9",
        )
        .unwrap();
        assert!(r.hold_first_fin && r.hold_syn && r.drop_third_ack);
        assert_eq!(
            r.drop_nth,
            vec![
                (Direction::ClientToServer, 3),
                (Direction::ServerToClient, 2)
            ]
        );
        assert_eq!((r.reorder_ppm, r.dup_ppm), (10_000, 5_000));
        assert_eq!(r.cut_after, Some(9));
        assert!(Rules::parse("cut=x").is_err() && Rules::parse("cut").is_err());
    }

    #[test]
    fn empty_spec_is_a_perfect_wire_with_the_default_seed() {
        let r = Rules::parse("  ").unwrap();
        assert!(r.is_perfect());
        assert_eq!(r.seed, DEFAULT_SEED);
    }

    #[test]
    fn from_str_is_parse() {
        let r: Rules = "hold-syn seed=3".parse().unwrap();
        assert_eq!(r, Rules::parse("seed=3 hold-syn").unwrap());
        assert!("bogus".parse::<Rules>().is_err());
    }

    #[test]
    fn display_parses_back() {
        let r = Rules::parse("delay=1.5ms loss=2.5% dup=1% seed=9 hold-syn drop=s:4").unwrap();
        assert_eq!(Rules::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn errors_name_the_bad_word() {
        for (spec, word, hint) in [
            ("delay=20 loss=5%", "delay=20", "unit"),
            ("loss=5", "loss=5", "percentage"),
            ("loss=120%", "loss=120%", "between"),
            ("delay=2x", "delay=2x", "unknown unit"),
            ("seed=abc", "seed=abc", "whole number"),
            ("drop=0", "drop=0", "from 1"),
            ("drop=x:1", "drop=x:1", "c: or s:"),
            ("hold-syn=1", "hold-syn=1", "no value"),
            ("loss", "loss", "needs a value"),
            ("jitter=3ms", "jitter=3ms", "unknown rule"),
        ] {
            let err = Rules::parse(spec).unwrap_err();
            assert_eq!(err.word, word, "{spec}");
            assert!(err.why.contains(hint), "{spec}: {}", err.why);
            assert!(err.to_string().starts_with(&format!("wire rule '{word}'")));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_specs_never_panic(spec in "\\PC{0,40}") {
            let _ = Rules::parse(&spec);
        }
    }
}
