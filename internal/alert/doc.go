// Package alert turns the compiled alerts: rules (package rule) into
// notifications: it evaluates thresholds over the store's queue, event and
// attempt statistics, announces dead runs the moment they happen, and sends
// FIRING, reminder and RESOLVED messages to Slack, webhook and email
// targets.
//
// # Services
//
// A Manager has two long-running halves, because they run on different
// nodes:
//
//   - Run evaluates the threshold rules (queue_depth, oldest_pending,
//     lag_p95, error_rate, rising_backlog, silent_source, poll_cursor,
//     poll_failing, backstop_found) every
//     evaluate_every. It is meant to run on ONE node, under the app's
//     leader lease: two evaluators would announce every alert twice.
//   - Deliver sends notifications and keeps this node's dead-letter alerts
//     up to date (reminders, and RESOLVED once the flow has no dead run
//     left). It runs on EVERY node, because every node's executor reports
//     the runs it dead-letters through RunDead.
//
// RunDead and ObserveLag are called from the executor's workers; both
// return at once. RunDead only updates memory and enqueues; Deliver sends
// within moments, without waiting for an evaluation.
//
// # Alert life cycle
//
// An alert is one rule applied to one subject (a flow, a system or a
// source). It is inactive until its condition holds; a queue_depth rule
// with for: is then pending until the condition has held that long. A
// firing alert is announced once (FIRING), re-announced every remind_every
// while it holds, and announced once more when its condition stops holding
// (RESOLVED). A dead_letter alert fires on the first dead run of a flow;
// later dead runs of that flow are counted into the next reminder, and it
// resolves when the flow has no dead run left (retried or replayed).
//
// # Delivery
//
// Each target has its own bounded queue and sender goroutine, so a slow
// Slack does not hold back the webhook. A failed send (a transport error,
// 408, 425, 429 or 5xx; for email, a connection or TLS error or an SMTP
// 4xx) is retried after 1s, 2s, 4s, … up to 1m, six tries in all; other
// statuses (an SMTP 5xx) are not retried. Email goes through go-mail, one
// SMTP connection per message, as plain text. A full queue drops the
// notification with an error log and counts it in Dropped. Target URLs,
// header values and SMTP passwords are secrets: logs name the target's
// kind, index and HTTP status or SMTP reply code, never its URL or
// password.
//
// Alert state lives in memory. After a restart, or when leadership moves,
// alerts that still hold are announced again by the node that evaluates
// them; lag_p95 sees only the runs that finished on the evaluating node.
package alert
