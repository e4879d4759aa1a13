package nat

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Type
		wantErr bool
	}{
		{"", Unknown, false},
		{"unknown", Unknown, false},
		{"restricted", Restricted, false},
		{"unrestricted", Unrestricted, false},
		{"Restricted", "", true},
		{"symmetric", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("Parse(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
