package config

// The environment variables of a deployed function: the one place they are
// named. The CDK stack (infra/) sets them; the functions read them. Secrets
// never travel in them: DSNs come from Secrets Manager (dsn_secret).
const (
	// EnvConfig holds the pipeline's YAML configuration text, with ${VAR}
	// references already expanded and the deploy section removed.
	EnvConfig = "PGFERRY_CONFIG"
	// EnvConfigFile names a configuration file instead (used when
	// EnvConfig is unset).
	EnvConfigFile = "PGFERRY_CONFIG_FILE"
	// EnvQueueURL is the URL of the pipeline's FIFO queue (batches and DDL
	// jobs). Without it the functions look the queue up by aws.queue.
	EnvQueueURL = "PGFERRY_QUEUE_URL"
	// EnvDLQURL is the URL of the FIFO dead-letter queue where apply parks
	// failing batches. Without it the functions look it up by name.
	EnvDLQURL = "PGFERRY_DLQ_URL"
	// EnvLoadQueueURL is the URL of the standard queue of initial-load
	// chunks.
	EnvLoadQueueURL = "PGFERRY_LOAD_QUEUE_URL"
)
