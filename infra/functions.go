package main

import (
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"
)

// function creates one Lambda with its own role and log group. The role
// starts empty: no managed policy, so the function can write its own log
// group and nothing else until grants() adds what it uses.
func (b *builder) function(fn string, code awslambda.Code, env map[string]*string) awslambda.Function {
	id := construct(fn)
	name := b.prefix + "-" + fn
	sz := b.set.sizes[fn]

	role := awsiam.NewRole(b.stack, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("pgferry " + name),
	})
	logs := awslogs.NewLogGroup(b.stack, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		LogGroupName:  jsii.String("/aws/lambda/" + name),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	logs.Node().DefaultChild().(awslogs.CfnLogGroup).SetRetentionInDays(jsii.Number(float64(b.set.logRetentionDays)))
	logs.GrantWrite(role)

	props := &awslambda.FunctionProps{
		FunctionName: jsii.String(name),
		Description:  jsii.String("pgferry " + fn + " for pipeline " + b.cfg.Name),
		Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("bootstrap"),
		Code:         code,
		MemorySize:   jsii.Number(float64(sz.memoryMB)),
		Timeout:      seconds(sz.timeout),
		Environment:  &env,
		Role:         role,
		LogGroup:     logs,
	}
	if fn == fnDrain {
		// One drainer per pipeline: overlapping ticks are throttled and,
		// should one get through, turned away by the lease.
		props.ReservedConcurrentExecutions = jsii.Number(1)
	}
	f := awslambda.NewFunction(b.stack, jsii.String(id), props)
	if b.vpc != nil {
		f.Node().DefaultChild().(awslambda.CfnFunction).AddPropertyOverride(jsii.String("VpcConfig"), b.vpc)
		// What Lambda needs to attach the function to the subnets (the
		// actions of AWSLambdaVPCAccessExecutionRole; EC2 offers no
		// resource-level scoping for the Describe calls).
		role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid: jsii.String("VpcNetworkInterfaces"),
			Actions: jsii.Strings("ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
				"ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"),
			Resources: jsii.Strings("*"),
		}))
	}
	return f
}

// network prepares the Lambda VpcConfig from deploy.vpc. Without security
// groups it creates one with all egress and no ingress, to be allowed into
// the databases' security groups.
func (b *builder) network() {
	v := b.cfg.Deploy.VPC
	if !v.Enabled() {
		return
	}
	sgs := jsii.Strings(v.SecurityGroups...)
	if len(v.SecurityGroups) == 0 {
		sg := awsec2.NewCfnSecurityGroup(b.stack, jsii.String("FunctionsSecurityGroup"), &awsec2.CfnSecurityGroupProps{
			VpcId:            jsii.String(v.ID),
			GroupDescription: jsii.String("pgferry " + b.cfg.Name + " functions: egress only"),
			SecurityGroupEgress: []interface{}{&awsec2.CfnSecurityGroup_EgressProperty{
				IpProtocol: jsii.String("-1"),
				CidrIp:     jsii.String("0.0.0.0/0"),
			}},
		})
		sgs = &[]*string{sg.AttrGroupId()}
		awscdk.NewCfnOutput(b.stack, jsii.String("FunctionsSecurityGroupId"), &awscdk.CfnOutputProps{
			Value:       sg.AttrGroupId(),
			Description: jsii.String("allow this group into the source's and targets' security groups (port 5432)"),
		})
	}
	b.vpc = map[string]interface{}{
		"SubnetIds":        jsii.Strings(v.Subnets...),
		"SecurityGroupIds": sgs,
	}
}

// construct turns a function name into a construct id: "initial-load" →
// "InitialLoad".
func construct(fn string) string {
	out := make([]byte, 0, len(fn))
	up := true
	for i := 0; i < len(fn); i++ {
		c := fn[i]
		if c == '-' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		out = append(out, c)
	}
	return string(out)
}

func seconds(d time.Duration) awscdk.Duration {
	return awscdk.Duration_Seconds(jsii.Number(d.Seconds()))
}
