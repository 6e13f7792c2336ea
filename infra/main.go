// Command infra is the AWS CDK app for pgferry: one stack per pipeline.
//
// Run it through the CDK CLI from the repository root (see cdk.json):
//
//	cdk synth -c name=orders              # stack pgferry-orders
//	PGFERRY_PIPELINE=orders cdk deploy    # same, name from the environment
//	cdk synth -c buildDir=dist            # Lambda zips from dist/<fn>/bootstrap.zip
package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

const (
	defaultPipeline = "demo"
	defaultBuildDir = "build"
	// placeholderDir is relative to the repository root, where cdk.json
	// runs the app.
	placeholderDir = "infra/placeholder"
)

func main() {
	defer jsii.Close()

	app := awscdk.NewApp(nil)

	// Precedence: -c name=... > $PGFERRY_PIPELINE > "demo". Do not set "name"
	// in cdk.json, or the environment variable would never apply.
	name := contextString(app, "name", os.Getenv("PGFERRY_PIPELINE"))
	if name == "" {
		name = defaultPipeline
	}
	buildDir := contextString(app, "buildDir", defaultBuildDir)

	drainCode, drainBuilt := lambdaCode(buildDir, "drain")
	applyCode, applyBuilt := lambdaCode(buildDir, "apply")

	stack := NewPipelineStack(app, "pgferry-"+name, &PipelineStackProps{
		StackProps: awscdk.StackProps{
			Description: jsii.String("pgferry pipeline " + name),
			Env:         envFromCLI(),
		},
		Pipeline:  name,
		DrainCode: drainCode,
		ApplyCode: applyCode,
	})
	if !drainBuilt || !applyBuilt {
		awscdk.Annotations_Of(stack.Stack).AddWarningV2(jsii.String("pgferry:placeholderCode"),
			jsii.String("Lambda bundle(s) missing under "+buildDir+"/<fn>/bootstrap.zip; "+
				"using the non-functional placeholder in "+placeholderDir+". Build before deploying."))
	}

	app.Synth(nil)
}

// contextString returns the string context value for key, or def when unset.
func contextString(app awscdk.App, key, def string) string {
	if v, ok := app.Node().TryGetContext(jsii.String(key)).(string); ok && v != "" {
		return v
	}
	return def
}

// lambdaCode returns the code asset for function fn and whether it is the
// real build output.
//
// The real bundle is <buildDir>/<fn>/bootstrap.zip, produced by the Makefile.
// When it is missing we fall back to packaging placeholderDir (a directory
// that is always in the repository) instead of failing: this keeps `cdk synth`,
// `cdk diff` and CI template checks working without cross-compiling the
// Lambdas first. Inline code is not an option: provided.al2023 does not
// support it. The caller adds a synth warning so a placeholder deploy does not
// go unnoticed.
func lambdaCode(buildDir, fn string) (awslambda.Code, bool) {
	zip := filepath.Join(buildDir, fn, "bootstrap.zip")
	if _, err := os.Stat(zip); err == nil {
		return awslambda.Code_FromAsset(jsii.String(zip), nil), true
	} else if !errors.Is(err, fs.ErrNotExist) {
		panic(err)
	}
	return awslambda.Code_FromAsset(jsii.String(placeholderDir), nil), false
}

// envFromCLI pins the stack to the account/region the CDK CLI resolved from
// the caller's credentials; without them the stack stays environment-agnostic.
func envFromCLI() *awscdk.Environment {
	account, region := os.Getenv("CDK_DEFAULT_ACCOUNT"), os.Getenv("CDK_DEFAULT_REGION")
	if account == "" || region == "" {
		return nil
	}
	return &awscdk.Environment{Account: jsii.String(account), Region: jsii.String(region)}
}
