// Command redshift-standin answers the Amazon Redshift Data API on a local
// port and executes on a PostgreSQL server, after refusing the SQL that
// Redshift refuses and translating what only Redshift has (COPY from S3,
// SUPER, VARBYTE, distribution and sort keys). It is for tests and local
// runs of pgferry; it proves the statements' shapes, not Redshift itself.
//
// Environment:
//
//	PGFERRY_REDSHIFT_PORT      listen port on 127.0.0.1 (default 4568)
//	PGFERRY_REDSHIFT_BACKEND   DSN of the PostgreSQL server to execute on; the
//	                           Data API's Database names a database there.
//	                           Unset: the stand-in answers, but every statement
//	                           fails with a message naming this variable.
//	PGFERRY_REDSHIFT_PAGE_ROWS records per GetStatementResult page (default 1000)
//	AWS_ENDPOINT_URL_S3        the S3 emulator COPY reads from (or AWS_ENDPOINT_URL)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(log); err != nil {
		log.Error("redshift stand-in stopped", "err", err)
		os.Exit(1)
	}
}

func serve(log *slog.Logger) error {
	port := envInt("PGFERRY_REDSHIFT_PORT", 4568)
	pageRows := envInt("PGFERRY_REDSHIFT_PAGE_ROWS", 1000)
	if port <= 0 || port > 65535 || pageRows <= 0 {
		return errors.New("PGFERRY_REDSHIFT_PORT must be a port number and PGFERRY_REDSHIFT_PAGE_ROWS positive")
	}
	s3c, err := s3Client(context.Background())
	if err != nil {
		return err
	}
	dsn := os.Getenv("PGFERRY_REDSHIFT_BACKEND")
	if dsn == "" {
		log.Warn("PGFERRY_REDSHIFT_BACKEND is not set: every statement will fail until the stand-in is restarted with it")
	}
	be := newBackend(dsn, s3c, log)
	defer be.close()
	srv := newServer(be, log, pageRows)

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen (PGFERRY_REDSHIFT_PORT=%d): %w", port, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		for range time.Tick(time.Minute) {
			srv.sweep(24*time.Hour, 5000)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		srv.closeSessions(5 * time.Second)
	}()
	log.Info("redshift stand-in listening", "addr", ln.Addr().String(), "backend", redact(dsn), "s3", s3c != nil)
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// s3Client reaches the S3 emulator, or is nil when no endpoint is set: a
// stand-in must never read from real S3.
func s3Client(ctx context.Context) (*s3.Client, error) {
	if os.Getenv("AWS_ENDPOINT_URL_S3") == "" && os.Getenv("AWS_ENDPOINT_URL") == "" {
		return nil, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration for the S3 emulator: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), nil
}
