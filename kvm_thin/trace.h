/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvm_thin's trace events: one live move of one VM, as it starts and as it ends; and
 * what happens to the irq-bypass consumer of an irqfd (bypass.c).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM kvm_thin

#if !defined(KLU_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define KLU_TRACE_H

#include <linux/tracepoint.h>

TRACE_EVENT(kvm_thin_move_start,
	TP_PROTO(unsigned long id, int pid, const char *from, const char *to),
	TP_ARGS(id, pid, from, to),

	TP_STRUCT__entry(
		__field(unsigned long, id)
		__field(int, pid)
		__string(from, from)
		__string(to, to)
	),

	TP_fast_assign(
		__entry->id = id;
		__entry->pid = pid;
		__assign_str(from, from);
		__assign_str(to, to);
	),

	TP_printk("vm=%lu pid=%d from=%s to=%s", __entry->id, __entry->pid,
		  __get_str(from), __get_str(to))
);

TRACE_EVENT(kvm_thin_move_end,
	TP_PROTO(unsigned long id, int result, const char *step, u64 blackout_ns,
		 u64 quiesce_ns, u64 rebuild_ns, u64 state_ns, u64 commit_ns),
	TP_ARGS(id, result, step, blackout_ns, quiesce_ns, rebuild_ns, state_ns, commit_ns),

	TP_STRUCT__entry(
		__field(unsigned long, id)
		__field(int, result)
		__string(step, step)
		__field(u64, blackout_ns)
		__field(u64, quiesce_ns)
		__field(u64, rebuild_ns)
		__field(u64, state_ns)
		__field(u64, commit_ns)
	),

	TP_fast_assign(
		__entry->id = id;
		__entry->result = result;
		__assign_str(step, step);
		__entry->blackout_ns = blackout_ns;
		__entry->quiesce_ns = quiesce_ns;
		__entry->rebuild_ns = rebuild_ns;
		__entry->state_ns = state_ns;
		__entry->commit_ns = commit_ns;
	),

	TP_printk("vm=%lu result=%d step=%s blackout_ns=%llu quiesce_ns=%llu rebuild_ns=%llu state_ns=%llu commit_ns=%llu",
		  __entry->id, __entry->result, __get_str(step), __entry->blackout_ns,
		  __entry->quiesce_ns, __entry->rebuild_ns, __entry->state_ns,
		  __entry->commit_ns)
);

TRACE_EVENT(kvm_thin_irqbypass,
	TP_PROTO(const char *op, unsigned long id, const char *core, int irq),
	TP_ARGS(op, id, core, irq),

	TP_STRUCT__entry(
		__string(op, op)
		__field(unsigned long, id)
		__string(core, core)
		__field(int, irq)
	),

	TP_fast_assign(
		__assign_str(op, op);
		__entry->id = id;
		__assign_str(core, core);
		__entry->irq = irq;
	),

	TP_printk("op=%s vm=%lu core=%s irq=%d", __get_str(op), __entry->id,
		  __get_str(core), __entry->irq)
);

#endif /* KLU_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace
#include <trace/define_trace.h>
