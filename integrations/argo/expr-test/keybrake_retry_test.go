// Keybrake's retry expressions, evaluated by Argo's own workflow controller (v4.0.5).
//
// This file is copied into workflow/controller/ of the argo-workflows module copy that
// scripts/install-argo.sh keeps in the cache, and run there with `go test -run TestKeybrake`
// (integrations/argo/test/expressions.test.ts does both). It is in the controller's package so
// that it calls the controller's own processNodeRetries: the retry policy, the backoff, the
// lastRetry.* scope (buildRetryStrategyLocalScope), Argo's expression environment (expr-lang plus
// asInt, sprig, jsonpath) and the "expression evaluated to false" decision, exactly as a running
// controller makes them. The cases come from the JSON file named by KEYBRAKE_RETRY_CASES; each
// result is printed as one KEYBRAKE-RESULT JSON line for the TypeScript test to assert.
package controller

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wfv1 "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v4/util/logging"
)

type keybrakeRetryCase struct {
	ID       string             `json:"id"`
	Strategy wfv1.RetryStrategy `json:"strategy"`
	// Phase of the last attempt: Failed or Error.
	Phase wfv1.NodePhase `json:"phase"`
	// Exit code of the last attempt as Argo records it (a string); "" for none (an Error before
	// the container ran, or an http node).
	ExitCode string `json:"exitCode"`
	// Attempts made so far (1 = the first attempt just ended).
	Attempts int `json:"attempts"`
}

type keybrakeRetryResult struct {
	ID      string `json:"id"`
	Retried bool   `json:"retried"`
	Phase   string `json:"phase"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func TestKeybrakeRetryExpressions(t *testing.T) {
	path := os.Getenv("KEYBRAKE_RETRY_CASES")
	if path == "" {
		t.Fatal("KEYBRAKE_RETRY_CASES is not set")
	}
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var cases []keybrakeRetryCase
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.NotEmpty(t, cases)

	for _, c := range cases {
		ctx := logging.TestContext(t.Context())
		cancel, controller := newController(ctx)
		wf := wfv1.MustUnmarshalWorkflow(helloWorldWf)
		woc := newWorkflowOperationCtx(ctx, wf, controller)

		nodeName := "keybrake-retry-node"
		node := woc.initializeNode(ctx, nodeName, wfv1.NodeTypeRetry, "", &wfv1.WorkflowStep{}, "", wfv1.NodeRunning, &wfv1.NodeFlag{}, true)
		woc.wf.Status.Nodes[node.ID] = *node
		// The attempts ended a minute ago, two minutes after the first started: any backoff has
		// elapsed and a maxDuration of 5m has not, so the decision is the policy's and the expression's.
		started := metav1.NewTime(time.Now().Add(-2 * time.Minute))
		finished := metav1.NewTime(time.Now().Add(-1 * time.Minute))
		for i := 0; i < c.Attempts; i++ {
			childName := fmt.Sprintf("%s(%d)", nodeName, i)
			child := woc.initializeNode(ctx, childName, wfv1.NodeTypePod, "", &wfv1.WorkflowStep{}, "", c.Phase, &wfv1.NodeFlag{Retried: true}, true)
			child.StartedAt = started
			child.FinishedAt = finished
			if c.ExitCode != "" {
				exitCode := c.ExitCode
				child.Outputs = &wfv1.Outputs{ExitCode: &exitCode}
			}
			woc.wf.Status.Nodes[child.ID] = *child
			woc.addChildNode(ctx, nodeName, childName)
		}
		parent, err := woc.wf.GetNodeByName(nodeName)
		require.NoError(t, err)

		result := keybrakeRetryResult{ID: c.ID}
		decided, _, err := woc.processNodeRetries(ctx, parent, c.Strategy, &executeTemplateOpts{})
		if err != nil {
			result.Error = err.Error()
		} else {
			result.Phase = string(decided.Phase)
			result.Message = decided.Message
			// Still running: the controller goes on to start the next attempt.
			result.Retried = decided.Phase == wfv1.NodeRunning
		}
		line, err := json.Marshal(result)
		require.NoError(t, err)
		fmt.Printf("KEYBRAKE-RESULT %s\n", line)
		cancel()
	}
}
