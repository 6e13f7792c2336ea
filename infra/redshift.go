package main

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgferry/pgferry/shared/config"
)

// The Redshift Data API calls of shared/redshift.DataAPI: Tx is
// BatchExecuteStatement, Query is ExecuteStatement then GetStatementResult;
// both poll DescribeStatement and cancel with CancelStatement.
var (
	// Submitting SQL is scoped to the cluster or workgroup.
	dataAPIRunActions = []string{"redshift-data:BatchExecuteStatement", "redshift-data:ExecuteStatement"}
	// Statement calls take a statement id, not a cluster: IAM scopes them
	// to statements this role submitted (the condition below).
	dataAPIStatementActions = []string{"redshift-data:CancelStatement", "redshift-data:DescribeStatement", "redshift-data:GetStatementResult"}
	// Staged COPY files: written, then removed once applied (DeleteObjects
	// needs s3:DeleteObject per key).
	stagingActions = []string{"s3:DeleteObject", "s3:PutObject"}
)

// redshiftTargets returns the names of the kind: redshift targets.
func (b *builder) redshiftTargets() []string {
	var out []string
	for _, n := range b.cfg.TargetNames() {
		if b.cfg.Targets[n].Kind == config.KindRedshift {
			out = append(out, n)
		}
	}
	return out
}

// redshiftGrants lets the functions that open targets run SQL on each
// Redshift target through the Data API, and the functions that write COPY
// files stage them under the target's prefix. The target's secret
// (data_api.secret_arn) is granted with the DSN secrets (grants). The COPY
// role is granted read access to the prefix by copyRoleAccess.
//
// Which functions: apply (batches), schema-diff (reads the target's
// catalog to plan DDL), initial-load (prepares target tables) and load
// (copies chunks). Only apply and load write COPY files.
func (b *builder) redshiftGrants() {
	o := b.out
	for _, n := range b.redshiftTargets() {
		t := b.cfg.Targets[n]
		sid := construct(strings.ReplaceAll(n, "_", "-"))
		stage := b.stagingObjects(n)
		for _, fn := range []string{fnApply, fnSchemaDiff, fnInitialLoad, fnLoad} {
			f := o.Functions[fn]
			if t.DataAPI != nil {
				b.allowDataAPI(f, sid, *t.DataAPI)
			}
			if fn == fnApply || fn == fnLoad {
				allow(f, "StageCopyFiles"+sid, stagingActions, stage)
			}
		}
	}
	if b.usesDataAPI() {
		// One statement per role, shared by every Redshift target.
		for _, fn := range []string{fnApply, fnSchemaDiff, fnInitialLoad, fnLoad} {
			b.allowStatements(o.Functions[fn])
		}
	}
	b.copyRoleAccess()
}

func (b *builder) usesDataAPI() bool {
	for _, n := range b.redshiftTargets() {
		if b.cfg.Targets[n].DataAPI != nil {
			return true
		}
	}
	return false
}

// allowDataAPI lets fn submit SQL to the workgroup or cluster of d, and
// obtain database credentials the way the Data API does for d: with
// secret_arn it reads the secret (granted in grants); with db_user,
// redshift:GetClusterCredentials for that user and database; with
// neither, the caller's IAM identity (GetCredentials on a workgroup,
// GetClusterCredentialsWithIAM on a cluster).
func (b *builder) allowDataAPI(fn awslambda.Function, sid string, d config.RedshiftDataAPI) {
	if d.Cluster != "" {
		allow(fn, "RunSQL"+sid, dataAPIRunActions, b.redshiftARN("cluster", d.Cluster))
		switch {
		case d.DBUser != "":
			allow(fn, "DBCredentials"+sid, []string{"redshift:GetClusterCredentials"},
				b.redshiftARN("dbuser", d.Cluster+"/"+d.DBUser), b.redshiftARN("dbname", d.Cluster+"/"+d.Database))
		case d.SecretARN == "":
			allow(fn, "DBCredentials"+sid, []string{"redshift:GetClusterCredentialsWithIAM"},
				b.redshiftARN("dbname", d.Cluster+"/"+d.Database))
		}
		return
	}
	wg := workgroupARN(b.stack, d.Workgroup)
	allow(fn, "RunSQL"+sid, dataAPIRunActions, wg)
	if d.SecretARN == "" {
		allow(fn, "DBCredentials"+sid, []string{"redshift-serverless:GetCredentials"}, wg)
	}
}

// allowStatements lets fn follow, read and cancel the statements it
// submitted, and no one else's.
func (b *builder) allowStatements(fn awslambda.Function) {
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("OwnStatements"),
		Actions:   jsii.Strings(dataAPIStatementActions...),
		Resources: jsii.Strings("*"),
		Conditions: &map[string]interface{}{"StringEquals": map[string]interface{}{
			"redshift-data:statement-owner-iam-userid": "${aws:userid}",
		}},
	}))
}

// redshiftARN is arn:…:redshift:<region>:<account>:<resource>:<name> in
// this stack's account and region.
func (b *builder) redshiftARN(resource, name string) *string {
	return b.stack.FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("redshift"),
		Resource:     jsii.String(resource),
		ResourceName: jsii.String(name),
		ArnFormat:    awscdk.ArnFormat_COLON_RESOURCE_NAME,
	})
}

// workgroupARN is the IAM resource of data_api.workgroup. A workgroup's ARN
// ends in its id, not its name, and the id is not known before it exists:
// given an ARN the grant is that workgroup; given a name it is every
// workgroup of the account in the stack's region (the README says so, and
// to give the ARN for the narrower grant).
func workgroupARN(stack awscdk.Stack, wg string) *string {
	if strings.HasPrefix(wg, "arn:") {
		return jsii.String(wg)
	}
	return stack.FormatArn(&awscdk.ArnComponents{
		Service:      jsii.String("redshift-serverless"),
		Resource:     jsii.String("workgroup"),
		ResourceName: jsii.String("*"),
		ArnFormat:    awscdk.ArnFormat_SLASH_RESOURCE_NAME,
	})
}

// stagingObjects is the IAM resource of target's staged COPY files:
// arn:…:s3:::<staging bucket>/<prefix>*.
func (b *builder) stagingObjects(target string) *string {
	return jsii.String(b.stagingBucketARN(target) + "/" + b.cfg.StagingPrefix(target) + "*")
}

func (b *builder) stagingBucketARN(target string) string {
	return "arn:" + *awscdk.Aws_PARTITION() + ":s3:::" + b.cfg.StagingBucket(b.cfg.Targets[target])
}

// copyRoleAccess lets each Redshift target's COPY role read its staged
// files. When they go to the pipeline's own bucket, a bucket policy
// statement names the role (so the role needs no change of its own, but
// it must exist when the stack is deployed). In another bucket, the
// operator grants the same (README, "Redshift targets").
func (b *builder) copyRoleAccess() {
	for _, n := range b.redshiftTargets() {
		t := b.cfg.Targets[n]
		if b.cfg.StagingBucket(t) != b.cfg.PayloadBucketName() {
			continue
		}
		sid := construct(strings.ReplaceAll(n, "_", "-"))
		role := awsiam.NewArnPrincipal(jsii.String(t.CopyRoleARN))
		prefix := b.cfg.StagingPrefix(n)
		b.out.Bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CopyRoleReads" + sid),
			Principals: &[]awsiam.IPrincipal{role},
			Actions:    jsii.Strings("s3:GetObject"),
			Resources:  &[]*string{b.out.Bucket.ArnForObjects(jsii.String(prefix + "*"))},
		}))
		b.out.Bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CopyRoleLists" + sid),
			Principals: &[]awsiam.IPrincipal{role},
			Actions:    jsii.Strings("s3:ListBucket"),
			Resources:  &[]*string{b.out.Bucket.BucketArn()},
			Conditions: &map[string]interface{}{"StringLike": map[string]interface{}{"s3:prefix": prefix + "*"}},
		}))
	}
}
