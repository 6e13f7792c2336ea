package main

import (
	"fmt"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
)

// Alarm ids: keys of PipelineStack.Alarms and suffixes of the alarm names
// ("pgferry-<pipeline>-<id>"). Per-target and per-function alarms append
// "-<target>" or "-<fn>". The README's runbook has a section for each.
const (
	alarmLag           = "lag"
	alarmGroupBlocked  = "group-blocked"
	alarmSequenceSync  = "sequence-sync"
	alarmDLQ           = "dlq-not-empty"
	alarmLoadDLQ       = "load-dlq-not-empty"
	alarmOldestMessage = "oldest-message"
	alarmErrors        = "errors"
	alarmThrottles     = "throttles"
	alarmDrainStopped  = "drain-not-running"
	alarmRetainedWAL   = "retained-wal"
	alarmWALUnread     = "retained-wal-unread"
	alarmEventBacklog  = "event-backlog"
	alarmBacklogUnread = "event-backlog-unread"
	alarmLoadStalled   = "load-stalled"
)

// alarmSpec is how one alarm evaluates its metric.
type alarmSpec struct {
	id, what  string
	metric    awscloudwatch.IMetric
	threshold float64
	op        awscloudwatch.ComparisonOperator
	// periods and breaching: ALARM when `breaching` of the last `periods`
	// datapoints cross the threshold.
	periods, breaching int
	missing            awscloudwatch.TreatMissingData
}

func (b *builder) alarms(topicARN string) {
	var topic awssns.ITopic
	if topicARN != "" {
		topic = awssns.Topic_FromTopicArn(b.stack, jsii.String("AlarmTopic"), jsii.String(topicARN))
	}
	add := func(s alarmSpec) {
		if s.periods == 0 {
			s.periods, s.breaching = 1, 1
		}
		if s.missing == "" {
			s.missing = awscloudwatch.TreatMissingData_NOT_BREACHING
		}
		a := awscloudwatch.NewAlarm(b.stack, jsii.String("Alarm-"+s.id), &awscloudwatch.AlarmProps{
			AlarmName:          jsii.String(b.prefix + "-" + s.id),
			AlarmDescription:   jsii.String(fmt.Sprintf("pgferry pipeline %s: %s. Runbook: README, Operating a deployed pipeline, alarm %q.", b.cfg.Name, s.what, s.id)),
			Metric:             s.metric,
			Threshold:          jsii.Number(s.threshold),
			ComparisonOperator: s.op,
			EvaluationPeriods:  jsii.Number(float64(s.periods)),
			DatapointsToAlarm:  jsii.Number(float64(s.breaching)),
			TreatMissingData:   s.missing,
		})
		if topic != nil {
			a.AddAlarmAction(awscloudwatchactions.NewSnsAction(topic))
			a.AddOkAction(awscloudwatchactions.NewSnsAction(topic))
		}
		b.out.Alarms[s.id] = a
	}
	above := awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD
	atLeast := awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD
	minute := time.Minute
	o, set := b.out, b.set

	for _, t := range b.cfg.TargetNames() {
		add(alarmSpec{id: alarmLag + "-" + t, what: "replication lag to target " + t + " is above " + set.lag.String(),
			metric: b.custom(metrics.ReplicationLag, t, "Maximum", minute), threshold: float64(set.lag.Milliseconds()), op: above,
			periods: 5, breaching: 3})
		// GroupBlocked is a state (1 while blocked, 0 after the next
		// successful apply): keep the alarm's state while no datapoint
		// arrives, since a blocked group on a quiet source emits none.
		add(alarmSpec{id: alarmGroupBlocked + "-" + t, what: "target " + t + "'s message group is blocked by a parked batch",
			metric: b.custom(metrics.GroupBlocked, t, "Maximum", minute), threshold: 1, op: atLeast,
			missing: awscloudwatch.TreatMissingData_IGNORE})
		// SequenceSyncFailures is 1 or 0 after every attempt: after each
		// apply cycle and each schema-diff run. Its Minimum over a period
		// is 1 only if every attempt in it failed, so one that fails and
		// then succeeds is no alarm. A period spans at least one
		// schema-diff run, so that a quiet source (no apply cycles) still
		// gives each period a datapoint; without any, the state is kept.
		if b.cfg.Targets[t].Kind == config.KindRedshift {
			// Redshift has no sequences: nothing to advance, no metric.
			continue
		}
		add(alarmSpec{id: alarmSequenceSync + "-" + t, what: "target " + t + "'s sequences cannot be advanced to the source's values (a failover would reuse keys)",
			metric: b.custom(metrics.SequenceSyncFailures, t, "Minimum", periodCovering(set.schemaDiffEvery, 15*minute)), threshold: 1, op: atLeast,
			periods: 2, breaching: 2, missing: awscloudwatch.TreatMissingData_IGNORE})
	}
	add(alarmSpec{id: alarmDLQ, what: "batches are parked in the dead-letter queue",
		metric: o.DLQ.MetricApproximateNumberOfMessagesVisible(stat("Maximum", minute)), threshold: 0, op: above})
	add(alarmSpec{id: alarmLoadDLQ, what: "initial-load chunks failed and are in the load dead-letter queue",
		metric: o.LoadDLQ.MetricApproximateNumberOfMessagesVisible(stat("Maximum", minute)), threshold: 0, op: above})
	add(alarmSpec{id: alarmOldestMessage, what: "the oldest batch on the queue is older than " + set.oldestMessage.String(),
		metric: o.Queue.MetricApproximateAgeOfOldestMessage(stat("Maximum", minute)), threshold: set.oldestMessage.Seconds(), op: above,
		periods: 3, breaching: 3})

	for _, fn := range functionNames {
		f := o.Functions[fn]
		// A scheduled or queue-driven function that fails once is retried
		// by the next tick or delivery: alarm on failures in two
		// consecutive five-minute periods. A failed initial load matters
		// at once.
		periods := 2
		if fn == fnInitialLoad {
			periods = 1
		}
		add(alarmSpec{id: alarmErrors + "-" + fn, what: "function " + fn + " is failing",
			metric: f.MetricErrors(stat("Sum", 5*minute)), threshold: 1, op: atLeast, periods: periods, breaching: periods})
		if fn == fnDrain {
			// Reserved concurrency 1 throttles every tick that overlaps a
			// drain still chasing a burst: that is the guard working, not a
			// fault, so the drain has no throttle alarm. What matters is
			// that it runs at all.
			add(alarmSpec{id: alarmDrainStopped, what: "the drain has not run for " + (3 * set.drainEvery).String(),
				metric: f.MetricInvocations(stat("Sum", min(3*set.drainEvery, 24*time.Hour))), threshold: 1,
				op: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD, missing: awscloudwatch.TreatMissingData_BREACHING})
			continue
		}
		add(alarmSpec{id: alarmThrottles + "-" + fn, what: "function " + fn + " is throttled (account or function concurrency exhausted)",
			metric: f.MetricThrottles(stat("Sum", 5*minute)), threshold: 1, op: atLeast, periods: periods, breaching: periods})
	}

	switch b.cfg.Source.Capture {
	case config.CaptureSlot:
		add(alarmSpec{id: alarmRetainedWAL, what: "the replication slot retains more WAL on the source than " + bytesString(set.retainedWALBytes),
			metric: b.custom(metrics.RetainedWALBytes, "", "Maximum", minute), threshold: float64(set.retainedWALBytes), op: above,
			periods: 3, breaching: 3})
		// Without a RetainedWALBytes datapoint the alarm above sees no
		// data and stays quiet, so a drain that cannot read its slot (the
		// source unreachable for it, while applications write on) is
		// alarmed on separately: every read in two periods failed.
		add(alarmSpec{id: alarmWALUnread, what: "the drain cannot read the replication slot's retained WAL, so retained-wal is blind",
			metric: b.custom(metrics.RetainedWALReadFailures, "", "Minimum", periodCovering(set.drainEvery, 5*minute)), threshold: 1, op: atLeast,
			periods: 2, breaching: 2, missing: awscloudwatch.TreatMissingData_IGNORE})
	default:
		add(alarmSpec{id: alarmEventBacklog, what: fmt.Sprintf("more than %d captured events wait on the source", set.eventBacklog),
			metric: b.custom(metrics.EventBacklog, "", "Maximum", minute), threshold: float64(set.eventBacklog), op: above,
			periods: 5, breaching: 5})
		// As with the slot: a drain that cannot count its events leaves
		// event-backlog without data, so that is alarmed on by itself.
		add(alarmSpec{id: alarmBacklogUnread, what: "the drain cannot count the captured events waiting on the source, so event-backlog is blind",
			metric: b.custom(metrics.EventBacklogReadFailures, "", "Minimum", periodCovering(set.drainEvery, 5*minute)), threshold: 1, op: atLeast,
			periods: 2, breaching: 2, missing: awscloudwatch.TreatMissingData_IGNORE})
	}

	// Whatever dimensions the load reports progress under (per pipeline or
	// per target), a Metrics Insights query over the pipeline sees them all.
	add(alarmSpec{id: alarmLoadStalled, what: "the initial load has made no progress for " + set.loadStalled.String(),
		metric: awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String(fmt.Sprintf("SELECT MAX(%s) FROM %q WHERE %s = '%s'",
				metrics.LoadSecondsSinceProgress, metrics.Namespace, metrics.DimPipeline, b.cfg.Name)),
			Label:  jsii.String(metrics.LoadSecondsSinceProgress),
			Period: seconds(minute),
		}),
		threshold: set.loadStalled.Seconds(), op: above})
}

// periodCovering is the period of an alarm on a 1-or-0 metric that a
// function emits every `every`: at least floor, at least one interval
// (in whole minutes, rounded up), at most 12 hours (CloudWatch evaluates
// at most a day, and these alarms take two periods).
func periodCovering(every, floor time.Duration) time.Duration {
	every = (every + time.Minute - 1) / time.Minute * time.Minute
	return min(max(floor, every), 12*time.Hour)
}

// custom is a pgferry EMF metric of this pipeline, for one target or, with
// target "", for the pipeline as a whole.
func (b *builder) custom(name, target, statistic string, period time.Duration) awscloudwatch.Metric {
	dims := map[string]*string{metrics.DimPipeline: jsii.String(b.cfg.Name)}
	if target != "" {
		dims[metrics.DimTarget] = jsii.String(target)
	}
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(metrics.Namespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &dims,
		Statistic:     jsii.String(statistic),
		Period:        seconds(period),
	})
}

func stat(statistic string, period time.Duration) *awscloudwatch.MetricOptions {
	return &awscloudwatch.MetricOptions{Statistic: jsii.String(statistic), Period: seconds(period)}
}

func bytesString(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d bytes", n)
}
