-- The W3C traceparent of the span that received the event ('' when tracing
-- was off), so its runs, executed later and maybe on another node, join the
-- event's trace. A constant default: no table rewrite.
ALTER TABLE events ADD COLUMN trace_parent text NOT NULL DEFAULT '';
