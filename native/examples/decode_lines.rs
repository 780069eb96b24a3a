//! Decode+validate every line of a JSONL file in pure Rust and print ns per event (a measurement
//! aid): `cargo run --release --example decode_lines FILE.jsonl`; with `parse` after the file name,
//! only the JSON parse is timed.

use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: decode_lines FILE.jsonl [parse]");
    let parse_only = std::env::args().nth(2).as_deref() == Some("parse");
    let data = std::fs::read(&path).expect("readable file");
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let rounds = 5;
    let started = Instant::now();
    let mut accepted = 0usize;
    for _ in 0..rounds {
        for line in &lines {
            accepted += usize::from(if parse_only {
                _native::json::parse(line).is_ok()
            } else {
                _native::event::check_event(line).is_ok()
            });
        }
    }
    let per_event = started.elapsed().as_nanos() as f64 / (rounds * lines.len()) as f64;
    println!("{} events x {rounds}: {per_event:.0} ns/event, {accepted} accepted", lines.len());
}
