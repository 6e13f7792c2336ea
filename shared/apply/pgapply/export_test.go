package pgapply

// Pipelined returns how many batches a sent as one pipeline and how many
// of them it applied that way.
func (a *Applier) Pipelined() (sent, applied int64) { return a.pipeSent.Load(), a.pipelined.Load() }
