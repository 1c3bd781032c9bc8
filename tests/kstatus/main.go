// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status) for
// every AgentTask in a namespace, read from the API server: one JSON object per line,
// {"name", "status", "message"}.  GitOps tools (Flux, kpt, cli-utils' apply --wait) use this
// library to decide whether an applied object is Current, InProgress or Failed.
//
//	go run . -kubeconfig ~/.kube/config -namespace default
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

var agentTasks = schema.GroupVersionResource{Group: "flyteagents.dev", Version: "v1alpha1", Resource: "agenttasks"}

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	namespace := flag.String("namespace", "default", "namespace of the AgentTasks")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("kubeconfig: %v", err)
	}
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		fail("client: %v", err)
	}
	list, err := client.Resource(agentTasks).Namespace(*namespace).List(context.Background(), v1.ListOptions{})
	if err != nil {
		fail("list agenttasks in %s: %v", *namespace, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
	out := json.NewEncoder(os.Stdout)
	for i := range list.Items {
		res, err := status.Compute(&list.Items[i])
		if err != nil {
			fail("compute %s: %v", list.Items[i].GetName(), err)
		}
		if err := out.Encode(verdict{list.Items[i].GetName(), res.Status.String(), res.Message}); err != nil {
			fail("write: %v", err)
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
