package main

import (
	"time"

	"github.com/pgferry/pgferry/shared/config"
)

// The pipeline's functions: their directories under functions/, their build
// outputs under <buildDir>/<fn>/bootstrap.zip, and their name suffixes.
const (
	fnDrain       = "drain"
	fnSchemaDiff  = "schema-diff"
	fnApply       = "apply"
	fnInitialLoad = "initial-load"
	fnLoad        = "load"
)

var functionNames = []string{fnDrain, fnSchemaDiff, fnApply, fnInitialLoad, fnLoad}

// size is one function's memory and timeout.
type size struct {
	memoryMB int
	timeout  time.Duration
}

// Default sizes, overridden by deploy.functions.<fn> in the config. Lambda
// gives CPU in proportion to memory (1,769 MB = one vCPU), so memory is
// chosen for CPU as much as for bytes.
var defaultSizes = map[string]size{
	// The drain loops until it is caught up or 30 s before its deadline, so
	// its timeout is how long one tick may chase a burst. Five minutes at a
	// one-minute rate means a burst is chased without pause (overlapping
	// ticks are turned away by reserved concurrency 1 and the lease). A
	// batch is bounded by batch.max_bytes (8 MiB by default) and the drain
	// holds about three copies of it (rows read, compacted, encoded), well
	// under 128 MB; 1,024 MB buys ~0.6 vCPU for compaction and encoding.
	fnDrain: {1024, 5 * time.Minute},
	// Reads two catalogs and renders DDL: small and short.
	fnSchemaDiff: {512, 2 * time.Minute},
	// Up to ten batches per invocation (the FIFO event source's maximum),
	// applied in order, each one target transaction of at most
	// batch.max_bytes, except a single larger source transaction, which is
	// never split. 1,024 MB leaves room for that and CPU for COPY encoding;
	// two minutes covers ten large batches against a remote database. The
	// FIFO queue's visibility timeout is six times this.
	fnApply: {1024, 2 * time.Minute},
	// Installs capture, then plans chunks (catalog and key-range queries on
	// every table) and enqueues them; the key-range queries on very large
	// tables can take minutes, so it gets Lambda's maximum.
	fnInitialLoad: {512, 15 * time.Minute},
	// Streams one chunk with binary COPY from source to target without
	// holding rows, so memory stays flat; the relay is CPU-bound, and
	// 2,048 MB is ~1.2 vCPU. A chunk must copy within the timeout: choose
	// chunk_rows so one takes a few minutes.
	fnLoad: {2048, 15 * time.Minute},
}

// Other defaults, overridden by the deploy section.
const (
	defaultDrainEvery       = time.Minute
	defaultSchemaDiffEvery  = 10 * time.Minute
	defaultLogRetentionDays = 30

	defaultLagAlarm           = 5 * time.Minute
	defaultOldestMessageAlarm = 15 * time.Minute
	defaultRetainedWALBytes   = 10 << 30 // 10 GiB
	defaultEventBacklog       = 1_000_000
	defaultLoadStalledAlarm   = 15 * time.Minute
)

// Queue settings.
const (
	// visibilityFactor: AWS asks for an SQS event source's visibility
	// timeout to be at least six times the function's timeout, so a batch
	// is not handed out again while a throttled or retried invocation still
	// holds it.
	visibilityFactor = 6
	// retentionDays is SQS's maximum: a batch must survive a target that
	// is down (or a group that is blocked) for as long as possible; the
	// age-of-oldest-message alarm fires long before.
	retentionDays = 14
	// payloadDays keeps claim-check payloads until every message that can
	// point at one is gone: up to retentionDays in the queue, then a fresh
	// retentionDays in the dead-letter queue (a parked batch is a new
	// message there), plus two days of slack.
	payloadDays = 2*retentionDays + 2
	// applyBatchSize is the most messages a FIFO event source hands over.
	applyBatchSize = 10
	// loadMaxReceives: a chunk that failed this often (each attempt
	// resumes from its progress in DynamoDB) goes to the load DLQ.
	loadMaxReceives = 3
)

// settings are the resolved deploy settings of one pipeline.
type settings struct {
	sizes            map[string]size
	drainEvery       time.Duration
	schemaDiffEvery  time.Duration
	loadConcurrency  int
	logRetentionDays int
	lag              time.Duration
	oldestMessage    time.Duration
	retainedWALBytes int64
	eventBacklog     int64
	loadStalled      time.Duration
}

// resolve applies the defaults to the config's deploy section.
func resolve(cfg *config.Config) settings {
	d := cfg.Deploy
	s := settings{sizes: map[string]size{}}
	for fn, def := range defaultSizes {
		var f config.Function
		switch fn {
		case fnDrain:
			f = d.Functions.Drain
		case fnSchemaDiff:
			f = d.Functions.SchemaDiff
		case fnApply:
			f = d.Functions.Apply
		case fnInitialLoad:
			f = d.Functions.InitialLoad
		case fnLoad:
			f = d.Functions.Load
		}
		s.sizes[fn] = size{or(f.MemoryMB, def.memoryMB), or(f.Timeout.Duration, def.timeout)}
	}
	s.drainEvery = or(d.DrainEvery.Duration, defaultDrainEvery)
	s.schemaDiffEvery = or(d.SchemaDiffEvery.Duration, defaultSchemaDiffEvery)
	// Load workers copy in parallel up to load.parallelism (the event
	// source's minimum is 2); each holds a source and a target connection.
	s.loadConcurrency = or(d.LoadConcurrency, max(2, cfg.Load.Parallelism))
	s.logRetentionDays = or(d.LogRetentionDays, defaultLogRetentionDays)
	s.lag = or(d.Alarms.Lag.Duration, defaultLagAlarm)
	s.oldestMessage = or(d.Alarms.OldestMessage.Duration, defaultOldestMessageAlarm)
	s.retainedWALBytes = or(d.Alarms.RetainedWALBytes, defaultRetainedWALBytes)
	s.eventBacklog = or(d.Alarms.EventBacklog, defaultEventBacklog)
	s.loadStalled = or(d.Alarms.LoadStalled.Duration, defaultLoadStalledAlarm)
	return s
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
