//! The sink against outputs that take everything, block for ever, or refuse everything.

use super::*;

/// Collects what the flushing thread writes.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `lines` as the output, with its last resort writing into `last`.
fn output(lines: impl Write + Send + 'static, last: &Sink) -> Output {
    let mut last = last.clone();
    Output {
        lines: Box::new(lines),
        last_resort: Box::new(move |line| last.write_all(line).unwrap()),
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A stdout that blocks for ever in its first write, and one that fails every write.
struct Stuck;
struct Closed;

impl Write for Stuck {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        loop {
            std::thread::park();
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_line_is_written_by_the_time_the_writer_is_closed() {
    let sink = Sink::default();
    let last = Sink::default();
    let (writer, flush) = spawn(output(sink.clone(), &last)).unwrap();
    for i in 0..10_000 {
        writer
            .make_writer()
            .write_all(format!("line {i}\n").as_bytes())
            .unwrap();
    }
    flush.close_within(Duration::from_secs(10));
    let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert_eq!(written.lines().count(), 10_000);
    assert_eq!(written.lines().last(), Some("line 9999"));
    assert_eq!(writer.dropped().total(), 0);
    assert_eq!(last.text(), "", "nothing lost, no last word");
}

#[test]
fn a_line_reaches_the_output_soon_without_more_lines() {
    let sink = Sink::default();
    let (writer, _flush) = spawn(output(sink.clone(), &Sink::default())).unwrap();
    writer.make_writer().write_all(b"alone\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sink.0.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the line was never written"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(&*sink.0.lock().unwrap(), b"alone\n");
}

#[test]
fn a_stuck_output_holds_the_close_no_longer_than_its_bound_and_every_line_counts() {
    let last = Sink::default();
    let (writer, flush) = spawn(output(Stuck, &last)).unwrap();
    let dropped = writer.dropped();
    let line = [b'x'; 1023];
    let lines = MAX_BUFFERED / 1024 + 100;
    for _ in 0..lines {
        let mut one = line.to_vec();
        one.push(b'\n');
        writer.make_writer().write_all(&one).unwrap();
    }
    let started = std::time::Instant::now();
    flush.close_within(Duration::from_millis(50));
    assert!(started.elapsed() < Duration::from_secs(2));
    // Whatever was refused, buffered, or in the stuck write counts as lost, and the last word
    // says so, through the way that cannot block.
    assert_eq!(dropped.total(), lines as u64);
    let last: serde_json::Value = serde_json::from_str(&last.text()).expect("one JSON line");
    assert_eq!(last["dropped"], lines as u64, "{last}");
    assert_eq!(last["level"], "WARN");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("rodent_log_lines_dropped_total")),
        "{last}"
    );
}

#[test]
fn lines_a_closed_output_refuses_are_counted() {
    let last = Sink::default();
    let (writer, flush) = spawn(output(Closed, &last)).unwrap();
    let dropped = writer.dropped();
    for i in 0..100 {
        writer
            .make_writer()
            .write_all(format!("line {i}\n").as_bytes())
            .unwrap();
    }
    flush.close_within(Duration::from_secs(5));
    assert_eq!(dropped.total(), 100);
    assert_eq!(
        last.text(),
        "",
        "the thread was not stuck: its last word went to the output, which refused it"
    );
}
