package config

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// DeployedText returns the configuration as a deployed function receives it
// in EnvConfig: ${VAR} references expanded with lookup (at synth time, so the
// function needs no such variables), comments and the deploy section removed
// (they only matter to infra, and a Lambda environment holds 4 KB in all).
// It validates data first, so a returned text always parses.
func DeployedText(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	if _, err := Parse(data, lookup); err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("config: the top level must be a mapping")
	}
	if err := expand(&root, "", lookup); err != nil {
		return nil, err
	}
	top := root.Content[0]
	kept := top.Content[:0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "deploy" {
			kept = append(kept, top.Content[i], top.Content[i+1])
		}
	}
	top.Content = kept
	stripComments(&root)
	out, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return out, nil
}

func stripComments(n *yaml.Node) {
	n.HeadComment, n.LineComment, n.FootComment = "", "", ""
	for _, c := range n.Content {
		stripComments(c)
	}
}
