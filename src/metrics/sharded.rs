//! Series that every request moves, counted per thread and summed when scraped.
//!
//! A prometheus counter is one atomic shared by every thread: on a hit served in a few
//! microseconds, the cache line it sits on moves between the cores on every request, for
//! each of the half-dozen series a hit touches. Here each thread adds to its own shard (one
//! cache line or more, never shared with another shard), and a scrape sums the shards. A
//! [`Hot`] collector puts the sums into the same families, under the same names and labels,
//! as the rest of each family's series, so the exposition reads as before.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{HistogramVec, IntCounterVec};

/// Shards per table: threads beyond this many share shards (still correct, each add is
/// atomic; only slower).
const SHARDS: usize = 16;

/// Cells in one cache line (128 bytes: two lines, as adjacent-line prefetch pairs them).
const CELLS_PER_LINE: usize = 16;

#[repr(align(128))]
struct Line([AtomicU64; CELLS_PER_LINE]);

thread_local! {
    /// This thread's shard, chosen at its first count.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Threads that have counted so far: the next one takes the next shard.
static THREADS: AtomicUsize = AtomicUsize::new(0);

fn shard() -> usize {
    SHARD.with(|shard| match shard.get() {
        Some(at) => at,
        None => {
            let at = THREADS.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(Some(at));
            at
        }
    })
}

/// `cells` u64 cells per shard, each shard on lines of its own.
struct Table {
    lines_per_shard: usize,
    lines: Box<[Line]>,
}

impl Table {
    fn new(cells: usize) -> Self {
        let lines_per_shard = cells.div_ceil(CELLS_PER_LINE).max(1);
        let lines = (0..SHARDS * lines_per_shard)
            .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        Self {
            lines_per_shard,
            lines,
        }
    }

    fn cell(&self, shard: usize, cell: usize) -> &AtomicU64 {
        &self.lines[shard * self.lines_per_shard + cell / CELLS_PER_LINE].0[cell % CELLS_PER_LINE]
    }

    fn add(&self, cell: usize, n: u64) {
        self.cell(shard(), cell).fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over the shards (wrapping: a gauge's shard may hold a negative count).
    fn sum(&self, cell: usize) -> u64 {
        (0..SHARDS).fold(0u64, |sum, shard| {
            sum.wrapping_add(self.cell(shard, cell).load(Ordering::Relaxed))
        })
    }
}

/// Hands out the cells of one table; frozen into it by [`Cells::build`].
#[derive(Default)]
pub struct Cells {
    next: usize,
    table: Arc<OnceLock<Table>>,
}

impl Cells {
    fn take(&mut self, n: usize) -> (Arc<OnceLock<Table>>, usize) {
        let first = self.next;
        self.next += n;
        (self.table.clone(), first)
    }

    /// Allocates the table for every cell handed out; counting before this panics.
    pub fn build(self) {
        let _ = self.table.set(Table::new(self.next));
    }
}

fn table(cell: &OnceLock<Table>) -> &Table {
    cell.get()
        .expect("the sharded table is built before anything counts")
}

/// A counter, or with [`ShardedCounter::dec`] a gauge, counted per thread.
#[derive(Clone)]
pub struct ShardedCounter {
    table: Arc<OnceLock<Table>>,
    cell: usize,
}

impl ShardedCounter {
    /// One cell of `cells`.
    pub fn new(cells: &mut Cells) -> Self {
        let (table, cell) = cells.take(1);
        Self { table, cell }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        table(&self.table).add(self.cell, n);
    }

    /// Takes one away (a gauge's).
    pub fn dec(&self) {
        table(&self.table).add(self.cell, u64::MAX);
    }

    /// The count over every thread.
    pub fn get(&self) -> u64 {
        table(&self.table).sum(self.cell)
    }

    /// The count over every thread, read as a gauge's signed value.
    pub fn get_signed(&self) -> i64 {
        self.get() as i64
    }
}

/// A histogram counted per thread: a cell per bucket, the count, and the sum in
/// nanoseconds (observations are durations in seconds).
#[derive(Clone)]
pub struct ShardedHistogram {
    table: Arc<OnceLock<Table>>,
    first: usize,
    bounds: Arc<[f64]>,
}

impl ShardedHistogram {
    /// Cells of `cells` for `bounds` (the buckets' upper bounds, ascending).
    pub fn new(cells: &mut Cells, bounds: &[f64]) -> Self {
        let (table, first) = cells.take(bounds.len() + 2);
        Self {
            table,
            first,
            bounds: bounds.into(),
        }
    }

    /// Records `seconds`.
    pub fn observe(&self, seconds: f64) {
        let table = table(&self.table);
        if let Some(bucket) = self.bounds.iter().position(|&bound| seconds <= bound) {
            table.add(self.first + bucket, 1);
        }
        let count = self.first + self.bounds.len();
        table.add(count, 1);
        table.add(count + 1, (seconds.max(0.0) * 1e9) as u64);
    }

    /// `(count, sum in seconds, cumulative count per bucket)` over every thread.
    pub fn snapshot(&self) -> (u64, f64, Vec<u64>) {
        let table = table(&self.table);
        let mut cumulative = 0;
        let buckets = (0..self.bounds.len())
            .map(|bucket| {
                cumulative += table.sum(self.first + bucket);
                cumulative
            })
            .collect();
        let count = self.first + self.bounds.len();
        (table.sum(count), table.sum(count + 1) as f64 / 1e9, buckets)
    }
}

/// One family's sharded series: label values and what counts them.
enum Series {
    Counters(IntCounterVec, Vec<(Vec<&'static str>, ShardedCounter)>),
    Histograms(HistogramVec, Vec<(Vec<&'static str>, ShardedHistogram)>),
    Gauge(Desc, ShardedCounter),
}

/// The collector that exposes sharded series in their families, beside the series the
/// family's vector counts the ordinary way. Register it instead of the vectors it holds,
/// once every family is added.
#[derive(Default)]
pub struct Hot {
    families: Vec<Series>,
}

impl Hot {
    /// `vec`'s family, with `series` (label values in the vector's label order) counted per
    /// thread.
    pub fn counters(
        &mut self,
        vec: IntCounterVec,
        series: Vec<(Vec<&'static str>, ShardedCounter)>,
    ) {
        self.families.push(Series::Counters(vec, series));
    }

    /// `vec`'s family, with `series` observed per thread.
    pub fn histograms(
        &mut self,
        vec: HistogramVec,
        series: Vec<(Vec<&'static str>, ShardedHistogram)>,
    ) {
        self.families.push(Series::Histograms(vec, series));
    }

    /// A gauge of its own family, with no labels.
    pub fn gauge(&mut self, name: &str, help: &str, gauge: ShardedCounter) {
        let desc =
            Desc::new(name.into(), help.into(), vec![], Default::default()).expect("valid metric");
        self.families.push(Series::Gauge(desc, gauge));
    }
}

impl Collector for Hot {
    fn desc(&self) -> Vec<&Desc> {
        self.families
            .iter()
            .flat_map(|family| match family {
                Series::Counters(vec, _) => vec.desc(),
                Series::Histograms(vec, _) => vec.desc(),
                Series::Gauge(desc, _) => vec![desc],
            })
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families.iter().map(Series::collect).collect()
    }
}

impl Series {
    fn collect(&self) -> MetricFamily {
        match self {
            Series::Counters(vec, series) => {
                let mut family = one(vec.collect());
                let names = label_names(vec.desc());
                for (values, counter) in series {
                    let metric = find_or_add(&mut family, &names, values);
                    let mut value = Counter::default();
                    value.set_value(metric.get_counter().get_value() + counter.get() as f64);
                    metric.set_counter(value);
                }
                family
            }
            Series::Histograms(vec, series) => {
                let mut family = one(vec.collect());
                let names = label_names(vec.desc());
                for (values, histogram) in series {
                    let (count, sum, cumulative) = histogram.snapshot();
                    let metric = find_or_add(&mut family, &names, values);
                    let mut merged = metric.get_histogram().clone();
                    let old: Vec<u64> = merged
                        .get_bucket()
                        .iter()
                        .map(Bucket::cumulative_count)
                        .collect();
                    let buckets = histogram
                        .bounds
                        .iter()
                        .zip(cumulative)
                        .enumerate()
                        .map(|(at, (&bound, count))| {
                            let mut bucket = Bucket::default();
                            bucket.set_upper_bound(bound);
                            bucket.set_cumulative_count(count + old.get(at).copied().unwrap_or(0));
                            bucket
                        })
                        .collect();
                    merged.set_bucket(buckets);
                    merged.set_sample_count(merged.get_sample_count() + count);
                    merged.set_sample_sum(merged.get_sample_sum() + sum);
                    metric.set_histogram(merged);
                }
                family
            }
            Series::Gauge(desc, gauge) => {
                let mut family = MetricFamily::default();
                family.set_name(desc.fq_name.clone());
                family.set_help(desc.help.clone());
                family.set_field_type(MetricType::GAUGE);
                let mut value = Gauge::default();
                value.set_value(gauge.get_signed() as f64);
                let mut metric = Metric::default();
                metric.set_gauge(value);
                family.set_metric(vec![metric]);
                family
            }
        }
    }
}

fn one(mut families: Vec<MetricFamily>) -> MetricFamily {
    families.pop().expect("a vector collects one family")
}

fn label_names(descs: Vec<&Desc>) -> Vec<String> {
    descs
        .first()
        .map(|desc| desc.variable_labels.clone())
        .unwrap_or_default()
}

/// The family's metric with `values` for `names`, added (zero) when the vector has none.
fn find_or_add<'a>(
    family: &'a mut MetricFamily,
    names: &[String],
    values: &[&str],
) -> &'a mut Metric {
    let matches = |metric: &Metric| {
        names.iter().zip(values).all(|(name, value)| {
            metric
                .get_label()
                .iter()
                .any(|pair| pair.name() == name && pair.value() == *value)
        })
    };
    let metrics = family.mut_metric();
    let at = match metrics.iter().position(matches) {
        Some(at) => at,
        None => {
            let mut metric = Metric::default();
            metric.set_label(
                names
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value((*value).to_owned());
                        pair
                    })
                    .collect(),
            );
            metrics.push(metric);
            metrics.len() - 1
        }
    };
    &mut metrics[at]
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, HistogramOpts, Opts, Registry, TextEncoder};

    use super::*;

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counts_from_many_threads_sum_into_the_family_beside_its_ordinary_series() {
        let registry = Registry::new();
        let mut hot = Hot::default();
        let mut cells = Cells::default();
        let vec =
            IntCounterVec::new(Opts::new("t_requests_total", "help"), &["kind", "status"]).unwrap();
        let ok = ShardedCounter::new(&mut cells);
        let seconds = HistogramVec::new(
            HistogramOpts::new("t_seconds", "help").buckets(vec![0.001, 0.01]),
            &["kind"],
        )
        .unwrap();
        let timed = ShardedHistogram::new(&mut cells, &[0.001, 0.01]);
        let in_flight = ShardedCounter::new(&mut cells);
        cells.build();
        hot.counters(vec.clone(), vec![(vec!["segment", "200"], ok.clone())]);
        hot.histograms(seconds.clone(), vec![(vec!["segment"], timed.clone())]);
        hot.gauge("t_in_flight", "help", in_flight.clone());
        registry.register(Box::new(hot)).unwrap();

        // More threads than shards: some share one, and nothing is lost.
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let (ok, timed, in_flight) = (ok.clone(), timed.clone(), in_flight.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        in_flight.inc();
                        ok.inc();
                        timed.observe(0.005);
                        in_flight.dec();
                    }
                    in_flight.inc();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        in_flight.dec();
        in_flight.dec();
        vec.with_label_values(&["segment", "404"]).inc();
        // A vector series with a sharded series' labels is summed with it, not repeated.
        vec.with_label_values(&["segment", "200"]).inc_by(2);
        seconds.with_label_values(&["segment"]).observe(0.0001);
        let n = (SHARDS + 3) * 1000;
        let text = render(&registry);
        assert!(
            text.contains(&format!(
                "t_requests_total{{kind=\"segment\",status=\"200\"}} {}\n",
                n + 2
            )),
            "{text}"
        );
        assert!(text.contains("t_requests_total{kind=\"segment\",status=\"404\"} 1\n"));
        assert_eq!(text.matches("status=\"200\"").count(), 1, "{text}");
        assert!(
            text.contains("t_seconds_bucket{kind=\"segment\",le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "t_seconds_bucket{{kind=\"segment\",le=\"0.01\"}} {}\n",
            n + 1
        )));
        assert!(text.contains(&format!("t_seconds_count{{kind=\"segment\"}} {}\n", n + 1)));
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("t_seconds_sum{kind=\"segment\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - (n as f64 * 0.005 + 0.0001)).abs() < 1e-6, "{sum}");
        assert!(
            text.contains(&format!("t_in_flight {}\n", SHARDS + 3 - 2)),
            "{text}"
        );
    }

    #[test]
    fn a_gauge_reads_negative_when_more_left_than_came() {
        let mut cells = Cells::default();
        let gauge = ShardedCounter::new(&mut cells);
        cells.build();
        gauge.dec();
        assert_eq!(gauge.get_signed(), -1);
        gauge.inc();
        gauge.inc();
        assert_eq!(gauge.get_signed(), 1);
    }
}
