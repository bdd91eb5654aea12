package recorder

import (
	"slices"
	"sort"
	"time"
)

// maxListedIDs caps the id lists in a Comparison.
const maxListedIDs = 20

// Comparison is what Compare found. Requests are counted by distinct id: a
// request the HTTP client retried appears twice in a log with the same id.
type Comparison struct {
	Online     int     `json:"online"`     // distinct requests recorded at the online server (entries without id count one each)
	Target     int     `json:"target"`     // entries recorded at the target
	Matched    int     `json:"matched"`    // online requests found at the target with the same method, body length and body hash
	Mismatched int     `json:"mismatched"` // online requests found at the target by id, but with a different body
	Missing    int     `json:"missing"`    // online requests not at the target at all
	Duplicates int     `json:"duplicates"` // target entries beyond the first for an id the online server saw
	Unexpected int     `json:"unexpected"` // target entries whose id the online server never saw (or without id)
	Fidelity   float64 `json:"fidelity"`   // Matched/Online*100, 0 when Online is 0

	// Copy latency of the matched requests: the time from a request's
	// arrival at the online server to its copy's arrival at the target
	// (both recorders' clocks are this machine's).
	LatencyP50 time.Duration `json:"latency_p50"`
	LatencyP99 time.Duration `json:"latency_p99"`
	LatencyMax time.Duration `json:"latency_max"`

	MissingIDs    []string `json:"missing_ids,omitempty"`    // first few, sorted
	MismatchedIDs []string `json:"mismatched_ids,omitempty"` // first few, sorted
}

func sameRequest(a, b Entry) bool {
	return a.Method == b.Method && a.BodyLen == b.BodyLen && a.BodySHA256 == b.BodySHA256
}

// Compare matches the requests the online server recorded with those the
// target recorded, by X-Lab-Id, and computes the copy fidelity.
func Compare(online, target []Entry) Comparison {
	var c Comparison
	c.Target = len(target)
	byID := make(map[string][]Entry, len(target))
	for _, e := range target {
		if e.ID == "" {
			c.Unexpected++
			continue
		}
		byID[e.ID] = append(byID[e.ID], e)
	}
	seen := make(map[string]bool, len(online))
	var lat []time.Duration
	for _, e := range online {
		if e.ID == "" {
			c.Online++
			c.Missing++
			continue
		}
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		c.Online++
		copies, ok := byID[e.ID]
		if !ok {
			c.Missing++
			c.MissingIDs = append(c.MissingIDs, e.ID)
			continue
		}
		c.Duplicates += len(copies) - 1
		matched := false
		for _, t := range copies {
			if sameRequest(e, t) {
				matched = true
				lat = append(lat, t.Time.Sub(e.Time))
				break
			}
		}
		if matched {
			c.Matched++
		} else {
			c.Mismatched++
			c.MismatchedIDs = append(c.MismatchedIDs, e.ID)
		}
	}
	for id := range byID {
		if !seen[id] {
			c.Unexpected += len(byID[id])
		}
	}
	if c.Online > 0 {
		c.Fidelity = float64(c.Matched) * 100 / float64(c.Online)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		c.LatencyP50 = lat[len(lat)/2]
		c.LatencyP99 = lat[min(len(lat)-1, len(lat)*99/100)]
		c.LatencyMax = lat[len(lat)-1]
	}
	c.MissingIDs = firstSorted(c.MissingIDs)
	c.MismatchedIDs = firstSorted(c.MismatchedIDs)
	return c
}

func firstSorted(ids []string) []string {
	sort.Strings(ids)
	if len(ids) > maxListedIDs {
		ids = ids[:maxListedIDs]
	}
	return ids
}
