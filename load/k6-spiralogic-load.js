// The launch playbook's k6 scenario. Base URL from BASE_URL (default: the local server),
// so the same script runs against staging:  k6 run -e BASE_URL=https://staging.example load/k6-spiralogic-load.js
// Where the canary header is staff-only (production settings), pass a staff key: -e STAFF_KEY=...
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const STAFF_KEY = __ENV.STAFF_KEY || '';

export const options = {
  vus: 10,
  duration: '2m',
  thresholds: {
    http_req_duration: ['p(95)<700'], // 95% under 700ms
    http_req_failed: ['rate<0.01'],   // <1% errors
  }
};

export default function () {
  const testCases = [
    { text: 'Help me find clarity in this decision', element: 'air' },
    { text: 'I feel stuck and need grounding', element: 'earth' },
    { text: 'Guide me through this emotional challenge', element: 'water' },
    { text: 'I need energy to take action', element: 'fire' },
    { text: 'Connect me with deeper wisdom', element: 'aether' }
  ];

  const testCase = testCases[Math.floor(Math.random() * testCases.length)];

  const payload = JSON.stringify({
    userId: `k6-user-${__VU}`,
    text: testCase.text,
    element: testCase.element
  });

  const headers = {
    'Content-Type': 'application/json',
    'x-experiment-spiralogic': 'on' // Test canary
  };
  if (STAFF_KEY) {
    headers['x-staff-key'] = STAFF_KEY;
  }

  const res = http.post(`${BASE_URL}/api/oracle/chat`, payload, { headers });

  check(res, {
    'status 200': r => r.status === 200,
    'has response text': r => JSON.parse(r.body).data?.message?.length > 0,
    'spiralogic mode': r => r.headers['X-Orchestrator'] === 'spiralogic'
  });

  sleep(Math.random() * 2 + 1); // 1-3 second pause
}
