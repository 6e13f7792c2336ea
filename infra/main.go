// Command infra is the AWS CDK app for pgferry: one stack per pipeline,
// built from the same configuration file as the local runner.
//
// Run it through the CDK CLI from the repository root (see cdk.json):
//
//	cdk deploy -c config=orders.yaml                  # stack pgferry-orders
//	cdk deploy -c config=orders.yaml,billing.yaml --all   # one stack each
//	cdk synth -c config=orders.yaml -c alarmTopic=arn:aws:sns:…
//	cdk synth -c buildDir=dist                        # zips from dist/<fn>/bootstrap.zip
//
// Context keys: config (comma-separated paths; cdk.json names the example
// infra/example.yaml), buildDir (default build), alarmTopic (overrides
// deploy.alarms.sns_topic). ${VAR} references in the configuration are
// expanded from the environment of the synth.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"

	"github.com/pgferry/pgferry/shared/config"
)

const (
	defaultBuildDir = "build"
	// placeholderDir is relative to the repository root, where cdk.json
	// runs the app.
	placeholderDir = "infra/placeholder"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	paths := contextString(app, "config", "")
	if paths == "" {
		fmt.Fprintln(os.Stderr, "pgferry: no pipeline configuration: pass -c config=path/to/pipeline.yaml")
		os.Exit(2)
	}
	buildDir := contextString(app, "buildDir", defaultBuildDir)
	topic := contextString(app, "alarmTopic", "")

	for _, path := range strings.Split(paths, ",") {
		if err := addPipeline(app, strings.TrimSpace(path), buildDir, topic); err != nil {
			fmt.Fprintln(os.Stderr, "pgferry:", err)
			os.Exit(1)
		}
	}
	app.Synth(nil)
}

// addPipeline adds the stack of the pipeline configured in path.
func addPipeline(app awscdk.App, path, buildDir, topic string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg, err := config.Parse(data, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := deployable(cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	text, err := config.DeployedText(data, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	code := map[string]awslambda.Code{}
	var missing []string
	for _, fn := range functionNames {
		c, built := lambdaCode(buildDir, fn)
		code[fn] = c
		if !built {
			missing = append(missing, fn)
		}
	}
	id := cfg.ResourcePrefix()
	s := NewPipelineStack(app, id, &PipelineStackProps{
		StackProps: awscdk.StackProps{
			Description: jsii.String("pgferry pipeline " + cfg.Name),
			Env:         envFromCLI(),
		},
		Config:        cfg,
		ConfigText:    string(text),
		Code:          code,
		AlarmTopicARN: topic,
	})
	if len(missing) > 0 {
		awscdk.Annotations_Of(s.Stack).AddWarningV2(jsii.String("pgferry:placeholderCode"),
			jsii.String("no Lambda bundle for "+strings.Join(missing, ", ")+" under "+buildDir+"/<fn>/bootstrap.zip; "+
				"using the non-functional placeholder in "+placeholderDir+". Build before deploying (make build)."))
	}
	return nil
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
// Lambdas first, and for functions whose code does not exist yet. Inline code
// is not an option: provided.al2023 does not support it. The caller adds a
// synth warning so a placeholder deploy does not go unnoticed.
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
