// probe is the test workload the local node runs: a static binary (standard library only)
// packed into a one-layer image, because no registry is reachable to pull one.
//
//	probe whoami          authenticate to the API server with the pod's in-cluster config
//	                      (service account token + CA bundle + KUBERNETES_SERVICE_HOST) and
//	                      print the user the API server sees, then keep running
//	probe serve ADDR      serve HTTP on ADDR: every request is answered with a JSON echo and
//	                      logged as one JSON line (method, path, query) on stdout
//	probe get URL         GET URL and print the status and body (exit 1 on error)
//	probe echo WORDS...   print WORDS (for kubectl exec)
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func whoami() error {
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT not set: not in a pod")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	url := "https://" + net.JoinHostPort(host, port) + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s answered %d: %s", url, resp.StatusCode, data)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &review); err != nil {
		return err
	}
	fmt.Printf("in-cluster user: %s via %s\n", review.Status.UserInfo.Username, net.JoinHostPort(host, port))
	return nil
}

func serve(addr string) error {
	hostname, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// one JSON line per request on stdout: `kubectl logs` is the server's call ledger
		line, _ := json.Marshal(map[string]string{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery})
		fmt.Println(string(line))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"host": hostname, "method": r.Method, "path": r.URL.Path, "body": string(body)})
	})
	fmt.Printf("serving on %s\n", addr)
	return http.ListenAndServe(addr, nil)
}

func get(url string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s\n", resp.StatusCode, data)
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe whoami | serve ADDR | get URL | echo WORDS...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "whoami":
		if err = whoami(); err == nil {
			for {
				time.Sleep(time.Hour)
			}
		}
	case "serve":
		err = serve(os.Args[2])
	case "get":
		err = get(os.Args[2])
	case "echo":
		fmt.Println(strings.Join(os.Args[2:], " "))
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}
