package main

import (
	"fmt"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgferry/pgferry/shared/config"
	"github.com/pgferry/pgferry/shared/metrics"
)

// dashboard lays out, top to bottom: lag and rows/s; batch sizes, the queue
// and the source backlog; errors; the initial load and every alarm.
func (b *builder) dashboard() {
	o, minute := b.out, time.Minute
	targets := b.cfg.TargetNames()

	var lag, applied []awscloudwatch.IMetric
	for i, t := range targets {
		lag = append(lag,
			label(b.custom(metrics.ReplicationLag, t, "Maximum", minute), t+" max"),
			label(b.custom(metrics.ReplicationLag, t, "p99", minute), t+" p99"))
		applied = append(applied, perSecond(fmt.Sprintf("applied%d", i), "applied to "+t, b.custom(metrics.RowsApplied, t, "Sum", minute)))
	}
	rows := append([]awscloudwatch.IMetric{perSecond("shipped", "shipped", b.custom(metrics.RowsShipped, "", "Sum", minute))}, applied...)

	backlog := []awscloudwatch.IMetric{label(b.custom(metrics.EventBacklog, "", "Maximum", minute), "events waiting on the source")}
	if b.cfg.Source.Capture == config.CaptureSlot {
		backlog = []awscloudwatch.IMetric{
			label(b.custom(metrics.RetainedWALBytes, "", "Maximum", minute), "retained WAL bytes"),
			label(b.custom(metrics.SlotLagBytes, "", "Maximum", minute), "slot lag bytes"),
		}
	}

	var fnErrors, fnThrottles []awscloudwatch.IMetric
	for _, fn := range functionNames {
		f := o.Functions[fn]
		fnErrors = append(fnErrors, label(f.MetricErrors(stat("Sum", minute)), fn+" errors"))
		fnThrottles = append(fnThrottles, label(f.MetricThrottles(stat("Sum", minute)), fn+" throttles"))
	}
	failures := []awscloudwatch.IMetric{label(b.custom(metrics.DrainFailures, "", "Sum", minute), "drain failures")}
	// A safety check that cannot run is a failure of its own: shown here
	// beside the others, and alarmed on (alarms.go).
	if b.cfg.Source.Capture == config.CaptureSlot {
		failures = append(failures, label(b.custom(metrics.RetainedWALReadFailures, "", "Maximum", minute), "slot state unread"))
	} else {
		failures = append(failures, label(b.custom(metrics.EventBacklogReadFailures, "", "Maximum", minute), "event backlog uncounted"))
	}
	for _, t := range targets {
		failures = append(failures,
			label(b.custom(metrics.ApplyFailures, t, "Sum", minute), t+" apply failures"),
			label(b.custom(metrics.PoisonBatches, t, "Sum", minute), t+" parked batches"),
			label(b.custom(metrics.GroupBlocked, t, "Maximum", minute), t+" blocked"))
		if b.cfg.Targets[t].Kind != config.KindRedshift {
			failures = append(failures, label(b.custom(metrics.SequenceSyncFailures, t, "Maximum", minute), t+" sequence sync failing"))
		}
	}

	// A Redshift target changes values it cannot hold (saturated numerics,
	// truncated text, replaced NaN…) and counts each, per table, column
	// and kind of conversion: one graph per target, one line per column.
	var lossy []awscloudwatch.IWidget
	for _, t := range b.redshiftTargets() {
		lossy = append(lossy, graph("Values changed to fit Redshift target "+t+" (by table, column, conversion)", 24,
			insights(fmt.Sprintf(`SELECT SUM(%s) FROM %q WHERE %s = '%s' AND %s = '%s' GROUP BY "%s", "%s", "%s"`,
				metrics.LossyConversions, metrics.Namespace, metrics.DimPipeline, b.cfg.Name, metrics.DimTarget, t,
				metrics.DimTable, metrics.DimColumn, metrics.DimConversion), "${LABEL}")))
	}

	var alarms []awscloudwatch.IAlarm
	for _, a := range o.Alarms {
		alarms = append(alarms, a)
	}

	rowsOfWidgets := []*[]awscloudwatch.IWidget{
		{
			graph("Replication lag (ms, source commit → target commit)", 12, lag...),
			graph("Rows per second", 12, rows...),
		},
		{
			graph("Rows per shipped batch", 8,
				label(b.custom(metrics.BatchRows, "", "Average", minute), "average"),
				label(b.custom(metrics.BatchRows, "", "Maximum", minute), "maximum")),
			graph("Batch queue", 8,
				label(o.Queue.MetricApproximateNumberOfMessagesVisible(stat("Maximum", minute)), "waiting"),
				label(o.Queue.MetricApproximateNumberOfMessagesNotVisible(stat("Maximum", minute)), "in flight"),
				label(o.DLQ.MetricApproximateNumberOfMessagesVisible(stat("Maximum", minute)), "parked (DLQ)"),
				label(o.Queue.MetricApproximateAgeOfOldestMessage(stat("Maximum", minute)), "oldest (s)")),
			graph("Source backlog", 8, backlog...),
		},
		{
			graph("Function errors", 8, fnErrors...),
			graph("Pipeline failures", 8, failures...),
			graph("Throttles", 8, fnThrottles...),
		},
		{
			graph("Initial load", 12,
				insights(fmt.Sprintf("SELECT SUM(%s) FROM %q WHERE %s = '%s'", metrics.LoadRowsCopied, metrics.Namespace, metrics.DimPipeline, b.cfg.Name), "rows copied"),
				insights(fmt.Sprintf("SELECT MAX(%s) FROM %q WHERE %s = '%s'", metrics.LoadSecondsSinceProgress, metrics.Namespace, metrics.DimPipeline, b.cfg.Name), "seconds since progress"),
				label(o.LoadQueue.MetricApproximateNumberOfMessagesVisible(stat("Maximum", minute)), "chunks waiting"),
				label(o.LoadQueue.MetricApproximateNumberOfMessagesNotVisible(stat("Maximum", minute)), "chunks copying"),
				label(o.LoadDLQ.MetricApproximateNumberOfMessagesVisible(stat("Maximum", minute)), "chunks failed (DLQ)")),
			awscloudwatch.NewAlarmStatusWidget(&awscloudwatch.AlarmStatusWidgetProps{
				Title:  jsii.String("Alarms"),
				Alarms: &alarms,
				Width:  jsii.Number(12),
				Height: jsii.Number(6),
			}),
		},
	}
	for i := range lossy {
		rowsOfWidgets = append(rowsOfWidgets, &[]awscloudwatch.IWidget{lossy[i]})
	}
	o.Dashboard = awscloudwatch.NewDashboard(b.stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName: jsii.String(b.prefix),
		Widgets:       &rowsOfWidgets,
	})
}

func graph(title string, width float64, ms ...awscloudwatch.IMetric) awscloudwatch.IWidget {
	return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
		Title:  jsii.String(title),
		Left:   &ms,
		Width:  jsii.Number(width),
		Height: jsii.Number(6),
	})
}

func label(m awscloudwatch.Metric, l string) awscloudwatch.IMetric {
	return m.With(&awscloudwatch.MetricOptions{Label: jsii.String(l)})
}

// perSecond turns a per-period Sum into a rate.
func perSecond(id, l string, sum awscloudwatch.IMetric) awscloudwatch.IMetric {
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression:   jsii.String(fmt.Sprintf("%s / PERIOD(%s)", id+"Sum", id+"Sum")),
		UsingMetrics: &map[string]awscloudwatch.IMetric{id + "Sum": sum},
		Label:        jsii.String(l),
		Period:       seconds(time.Minute),
	})
}

// insights is a Metrics Insights query over the pipeline's metrics.
func insights(query, l string) awscloudwatch.IMetric {
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String(query),
		Label:      jsii.String(l),
		Period:     seconds(time.Minute),
	})
}
