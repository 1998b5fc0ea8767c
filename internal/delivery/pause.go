package delivery

import "context"

// LiftPause lifts, on every node, the credential pause of system that a
// call's success has just lifted on this node (its gate's done reported
// resumed): it deletes the pause from the store, wakes the runs held for
// the system, logs, and tells the notifier. The executor calls it for its
// steps; the poller, through its ResumedFunc, for its page reads. Safe for
// concurrent use. A store error is logged: the store's pause then stays,
// and this node's sync applies it again within seconds.
func (x *Executor) LiftPause(ctx context.Context, system string) {
	// Never an operator's pause: this node may not have read one applied
	// since the call began (pauses sync every 2 s).
	resumed, err := x.cfg.Store.ResumeCredentialPause(ctx, system)
	if err != nil {
		x.cfg.Logger.Warn("record system resumed", "system", system, "error", err)
	}
	if !resumed {
		return
	}
	n, err := x.cfg.Store.WakeHeld(ctx, system, x.cfg.NowFunc())
	if err != nil {
		x.cfg.Logger.Warn("wake runs held for a resumed system; they go at their next check", "system", system, "error", err)
	}
	x.cfg.Logger.Info("system resumed: a call to it succeeded", "system", system, "woken_runs", n)
	if n, ok := x.cfg.Notifier.(SystemNotifier); ok {
		n.SystemResumed(system)
	}
}
