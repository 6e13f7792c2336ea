package fault

// The environment of a binary built with -tags faults.
const (
	// EnvSpec arms one point: "point@N" crashes at its Nth hit.
	EnvSpec = "PGFERRY_FAULT"
	// EnvMark names a file the crash writes "point@N\n" into (synced)
	// just before the SIGKILL, so a test counts only real crashes there.
	EnvMark = "PGFERRY_FAULT_MARK"
)

// The fault points. Each names the moment just before the next durable
// step, where a crash leaves the most work half done.
const (
	// DrainWindowOpened: the window's snapshot is checkpointed, no batch
	// of it has been sent.
	DrainWindowOpened = "drain.window-opened"
	// DrainSent: a batch is on the queue for every target; under trigger
	// capture its checkpoint is not written, under slot capture its
	// checkpoint is (saved first) and the slot is not confirmed.
	DrainSent = "drain.sent"
	// DrainCheckpointed: a batch's checkpoint is written; under trigger
	// capture the next batch, the window's close and the purge are not;
	// under slot capture the batch is not published (the checkpoint marks
	// it to be resent).
	DrainCheckpointed = "drain.checkpointed"
	// DrainSpilled: a part of a transaction larger than a batch is in
	// the claim-check bucket; the batch's manifest is not published.
	DrainSpilled = "drain.spilled"
	// ApplyPart: a part of a spilled batch is written inside the target
	// transaction, the rest of it and the commit are not.
	ApplyPart = "apply.part"
	// ApplyStaged: a batch's rows are written inside the target
	// transaction, its watermark and commit are not.
	ApplyStaged = "apply.staged"
	// ApplyCommitted: the apply transaction committed, the message is not
	// deleted from the queue.
	ApplyCommitted = "apply.committed"
	// ApplyParked: a poison batch is in the dead-letter queue and still in
	// its own queue.
	ApplyParked = "apply.parked"
)
