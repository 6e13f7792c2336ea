package config

import (
	"fmt"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

var lineRE = regexp.MustCompile(`line (\d+): `)

// nameKeys replaces "line N: " in a decoding error with the dotted key
// whose value sits on line N of doc, so the message names the key as every
// other configuration error does ("drain.interval: …").
func nameKeys(msg string, doc []byte) string {
	var root yaml.Node
	if yaml.Unmarshal(doc, &root) != nil {
		return msg
	}
	return lineRE.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if p := keyAtLine(&root, "", n); p != "" {
			return p + ": "
		}
		return m
	})
}

// keyAtLine returns the path of the innermost key whose value starts on
// line, or "".
func keyAtLine(n *yaml.Node, path string, line int) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := keyAtLine(c, path, line); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := keyAtLine(c, fmt.Sprintf("%s[%d]", path, i), line); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + p
			}
			if inner := keyAtLine(v, p, line); inner != "" {
				return inner
			}
			if v.Kind == yaml.ScalarNode && v.Line == line {
				return p
			}
		}
	}
	return ""
}
