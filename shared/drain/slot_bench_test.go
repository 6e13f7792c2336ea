package drain_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestBenchSlotDrainVsRecvlogical is benchmark R2, run by make bench
// (PGFERRY_BENCH_R2=1): rows/s of a full slot drain (decode, compact,
// encode, claim check to S3, SQS, checkpoint, confirm) against
// pg_recvlogical reading the same WAL with the same plugin and
// publication into /dev/null. Both slots exist before the workload is
// written, so both decode exactly the same transactions.
func TestBenchSlotDrainVsRecvlogical(t *testing.T) {
	if os.Getenv("PGFERRY_BENCH_R2") == "" {
		t.Skip("benchmark: set PGFERRY_BENCH_R2=1 (make bench does)")
	}
	recv, err := exec.LookPath("pg_recvlogical")
	if err != nil {
		t.Fatalf("pg_recvlogical: %v", err)
	}
	workloads := []struct {
		name  string
		rows  int
		write string
	}{
		{"one 1M-row transaction", 1_000_000,
			`INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000000) g`},
		{"100k one-row transactions", 100_000,
			`DO $$ BEGIN
			   PERFORM set_config('synchronous_commit', 'off', false);
			   FOR i IN 1..100000 LOOP INSERT INTO t VALUES (i, md5(i::text)); COMMIT; END LOOP;
			 END $$`},
	}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			r := newSlotRig(t, tDDL)
			ctx := context.Background()
			r.run(r.slotDrainer("setup", r.cfg.Batch.MaxRows, r.store, r.q, nil))
			base := r.cfg.SlotName() + "_recv"
			r.exec(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, base)
			r.exec(w.write)
			var end string
			if err := r.src.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			cmd := exec.Command(recv, "-d", r.srcDSN, "--slot", base, "--start", "--no-loop", "--endpos", end,
				"-o", "proto_version=1", "-o", "publication_names="+r.cfg.PublicationName(), "-f", "/dev/null")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("pg_recvlogical: %v\n%s", err, out)
			}
			baseline := time.Since(start)
			r.exec(`SELECT pg_drop_replication_slot($1)`, base)

			runtime.GC()
			done := heapPeak()
			start = time.Now()
			st := r.run(r.slotDrainer("bench", r.cfg.Batch.MaxRows, r.store, r.q, nil))
			ours := time.Since(start)
			heap := done()
			if st.Rows != w.rows {
				t.Fatalf("the drain shipped %d rows, want %d", st.Rows, w.rows)
			}
			ratio := baseline.Seconds() / ours.Seconds()
			fmt.Printf("R2  slot drain, %-26s %9.0f rows/s / pg_recvlogical %9.0f rows/s = %.2fx (goal >= 0.80) [%d batches, peak heap %d MiB]\n",
				w.name+":", float64(w.rows)/ours.Seconds(), float64(w.rows)/baseline.Seconds(), ratio, st.Batches, heap>>20)
		})
	}
}

// heapPeak samples the heap in use until the returned function is called,
// which returns the peak (an upper bound on what the drain held: the test's own
// allocations are included).
func heapPeak() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(stop); <-finished; return peak.Load() }
}
