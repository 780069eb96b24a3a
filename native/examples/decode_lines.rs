//! Decode+validate every line of a JSONL file in pure Rust and print ns per event (a measurement aid).

use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: decode_lines FILE.jsonl");
    let data = std::fs::read(&path).expect("readable file");
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let rounds = 5;
    let started = Instant::now();
    let mut accepted = 0usize;
    for _ in 0..rounds {
        for line in &lines {
            accepted += usize::from(_native::event::check_event(line).is_ok());
        }
    }
    let per_event = started.elapsed().as_nanos() as f64 / (rounds * lines.len()) as f64;
    println!("{} events x {rounds}: {per_event:.0} ns/event, {accepted} accepted", lines.len());
}
