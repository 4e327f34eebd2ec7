//! Wire compatibility: golden byte strings written by hand from the field numbers of
//! spec/protocol.md §1 decode into our messages field by field, and our encoding reproduces them.
//! A tag byte is `field_number << 3 | wire_type` (0 varint, 1 fixed64, 2 length-delimited).
//! Maps with several entries are checked by decoding only: prost's HashMap order is not stable.

#![allow(deprecated)] // the deprecated fields are part of the wire contract and are checked too

use std::fmt::Debug;

use act_runner::client::proto::ping::{PingRequest, PingResponse};
use act_runner::client::proto::runner::{
    DeclareRequest, DeclareResponse, FetchTaskRequest, FetchTaskResponse, LogRow, RegisterRequest,
    RegisterResponse, Result as TaskResult, Runner, RunnerStatus, StepState, Task, TaskNeed,
    TaskState, UpdateLogRequest, UpdateLogResponse, UpdateTaskRequest, UpdateTaskResponse,
};
use prost::Message;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp, Value};

/// Concatenates hand-written pieces: tag and length bytes, and text.
fn bytes(pieces: &[&[u8]]) -> Vec<u8> {
    pieces.concat()
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The golden bytes decode to `message`, and `message` encodes to the golden bytes.
#[track_caller]
fn check<M: Message + Default + PartialEq + Debug>(message: M, golden: &[u8]) {
    let decoded = M::decode(golden).unwrap();
    assert_eq!(decoded, message, "decoding {}", hex(golden));
    assert_eq!(
        hex(&message.encode_to_vec()),
        hex(golden),
        "encoding {message:?}"
    );
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn string_value(text: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(text.to_owned())),
    }
}

#[test]
fn register_request_every_field() {
    let message = RegisterRequest {
        name: "r1".into(),
        token: "T".into(),
        agent_labels: strings(&["a"]),
        custom_labels: strings(&["c"]),
        version: "v1".into(),
        labels: strings(&["ubuntu"]),
        ephemeral: true,
        capabilities: strings(&["cancelling"]),
    };
    let golden = bytes(&[
        &[0x0a, 2],
        b"r1", // 1 name
        &[0x12, 1],
        b"T", // 2 token
        &[0x1a, 1],
        b"a", // 3 agent_labels
        &[0x22, 1],
        b"c", // 4 custom_labels
        &[0x2a, 2],
        b"v1", // 5 version
        &[0x32, 6],
        b"ubuntu",  // 6 labels
        &[0x38, 1], // 7 ephemeral
        &[0x42, 10],
        b"cancelling", // 8 capabilities
    ]);
    check(message.clone(), &golden);
    let decoded = RegisterRequest::decode(&golden[..]).unwrap();
    assert_eq!(decoded.name, "r1");
    assert_eq!(decoded.token, "T");
    assert_eq!(decoded.labels, ["ubuntu"]);
    assert!(decoded.ephemeral);
    assert_eq!(decoded.capabilities, ["cancelling"]);
}

fn runner_golden() -> Vec<u8> {
    bytes(&[
        &[0x08, 7], // 1 id
        &[0x12, 1],
        b"u", // 2 uuid
        &[0x1a, 1],
        b"t", // 3 token
        &[0x22, 1],
        b"n",       // 4 name
        &[0x28, 1], // 5 status = IDLE
        &[0x32, 1],
        b"a", // 6 agent_labels
        &[0x3a, 1],
        b"c", // 7 custom_labels
        &[0x42, 1],
        b"v", // 8 version
        &[0x4a, 1],
        b"l",       // 9 labels
        &[0x50, 1], // 10 ephemeral
    ])
}

fn runner_message() -> Runner {
    Runner {
        id: 7,
        uuid: "u".into(),
        token: "t".into(),
        name: "n".into(),
        status: RunnerStatus::Idle as i32,
        agent_labels: strings(&["a"]),
        custom_labels: strings(&["c"]),
        version: "v".into(),
        labels: strings(&["l"]),
        ephemeral: true,
    }
}

#[test]
fn runner_every_field() {
    check(runner_message(), &runner_golden());
}

#[test]
fn register_and_declare_responses_wrap_the_runner_in_field_1() {
    let runner = runner_golden();
    assert_eq!(runner.len(), 27);
    let golden = bytes(&[&[0x0a, 27], &runner]);
    check(
        RegisterResponse {
            runner: Some(runner_message()),
        },
        &golden,
    );
    check(
        DeclareResponse {
            runner: Some(runner_message()),
        },
        &golden,
    );
}

#[test]
fn declare_request_every_field() {
    let message = DeclareRequest {
        version: "v".into(),
        labels: strings(&["a", "b"]),
        capabilities: strings(&["c"]),
    };
    let golden = bytes(&[
        &[0x0a, 1],
        b"v", // 1 version
        &[0x12, 1],
        b"a",
        &[0x12, 1],
        b"b", // 2 labels, repeated
        &[0x1a, 1],
        b"c", // 3 capabilities
    ]);
    check(message, &golden);
}

#[test]
fn fetch_task_request_and_response_as_in_the_spec() {
    check(FetchTaskRequest { tasks_version: 0 }, &[]);
    check(FetchTaskRequest { tasks_version: 5 }, &[0x08, 0x05]);
    check(FetchTaskRequest { tasks_version: 300 }, &[0x08, 0xac, 0x02]);
    // int64 -1 is ten varint bytes.
    check(
        FetchTaskRequest { tasks_version: -1 },
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    );
    check(
        FetchTaskResponse {
            task: None,
            tasks_version: 5,
        },
        &[0x10, 0x05],
    );
    check(
        FetchTaskResponse {
            task: Some(Task {
                id: 1,
                ..Task::default()
            }),
            tasks_version: 5,
        },
        &[0x0a, 0x02, 0x08, 0x01, 0x10, 0x05],
    );
}

#[test]
fn unknown_fields_are_skipped() {
    // field 99, varint: tag 99 << 3 = 792 = varint 98 06
    let decoded = FetchTaskResponse::decode(&[0x10, 0x05, 0x98, 0x06, 0x01][..]).unwrap();
    assert_eq!(decoded.tasks_version, 5);
    assert!(decoded.task.is_none());
}

#[test]
fn task_every_field_with_single_entry_maps() {
    let context = Struct {
        fields: [("event_name".to_owned(), string_value("push"))].into(),
    };
    let message = Task {
        id: 42,
        workflow_payload: Some(b"on: push".to_vec()),
        context: Some(context),
        secrets: [("K".to_owned(), "V".to_owned())].into(),
        machine: "m".into(),
        needs: [(
            "build".to_owned(),
            TaskNeed {
                outputs: [("o".to_owned(), "x".to_owned())].into(),
                result: TaskResult::Success as i32,
            },
        )]
        .into(),
        vars: [("A".to_owned(), "B".to_owned())].into(),
    };
    let value = bytes(&[&[0x1a, 4], b"push"]); // Value.string_value = 3
    let entry = bytes(&[&[0x0a, 10], b"event_name", &[0x12, 6], &value]); // map entry key 1, value 2
    let context_struct = bytes(&[&[0x0a, 20], &entry]); // Struct.fields = 1
    let need = bytes(&[&[0x0a, 6, 0x0a, 1], b"o", &[0x12, 1], b"x", &[0x10, 1]]);
    let needs_entry = bytes(&[&[0x0a, 5], b"build", &[0x12, 10], &need]);
    let golden = bytes(&[
        &[0x08, 42], // 1 id
        &[0x12, 8],
        b"on: push", // 2 workflow_payload
        &[0x1a, 22],
        &context_struct, // 3 context
        &[0x22, 6, 0x0a, 1],
        b"K",
        &[0x12, 1],
        b"V", // 4 secrets
        &[0x2a, 1],
        b"m", // 5 machine
        &[0x32, 19],
        &needs_entry, // 6 needs
        &[0x3a, 6, 0x0a, 1],
        b"A",
        &[0x12, 1],
        b"B", // 7 vars
    ]);
    check(message, &golden);
}

#[test]
fn task_optional_fields_have_presence() {
    // An empty payload and an empty context are still sent; absent ones are not.
    check(
        Task {
            id: 1,
            workflow_payload: Some(Vec::new()),
            context: Some(Struct::default()),
            ..Task::default()
        },
        &[0x08, 0x01, 0x12, 0x00, 0x1a, 0x00],
    );
    let absent = Task::decode(&[0x08, 0x01][..]).unwrap();
    assert_eq!(absent.workflow_payload, None);
    assert_eq!(absent.context, None);
}

#[test]
fn task_maps_with_several_entries_decode() {
    let golden = bytes(&[
        &[0x22, 6, 0x0a, 1],
        b"A",
        &[0x12, 1],
        b"1", // secrets A=1
        &[0x22, 6, 0x0a, 1],
        b"B",
        &[0x12, 1],
        b"2", // secrets B=2
        &[0x3a, 6, 0x0a, 1],
        b"X",
        &[0x12, 1],
        b"9", // vars X=9
    ]);
    let task = Task::decode(&golden[..]).unwrap();
    assert_eq!(task.secrets.len(), 2);
    assert_eq!(task.secrets["A"], "1");
    assert_eq!(task.secrets["B"], "2");
    assert_eq!(task.vars["X"], "9");
}

#[test]
fn struct_values_of_every_kind() {
    // Struct.fields is a BTreeMap, so its encoding order (sorted keys) is stable.
    let nested = Struct {
        fields: [("k".to_owned(), string_value("v"))].into(),
    };
    let message = Struct {
        fields: [
            (
                "b".to_owned(),
                Value {
                    kind: Some(Kind::BoolValue(true)),
                },
            ),
            (
                "l".to_owned(),
                Value {
                    kind: Some(Kind::ListValue(ListValue {
                        values: vec![Value {
                            kind: Some(Kind::BoolValue(true)),
                        }],
                    })),
                },
            ),
            (
                "n".to_owned(),
                Value {
                    kind: Some(Kind::NumberValue(1.5)),
                },
            ),
            (
                "o".to_owned(),
                Value {
                    kind: Some(Kind::StructValue(nested)),
                },
            ),
            (
                "z".to_owned(),
                Value {
                    kind: Some(Kind::NullValue(0)),
                },
            ),
        ]
        .into(),
    };
    let entry = |key: &[u8], value: &[u8]| -> Vec<u8> {
        let inner = bytes(&[
            &[0x0a, key.len() as u8],
            key,
            &[0x12, value.len() as u8],
            value,
        ]);
        bytes(&[&[0x0a, inner.len() as u8], &inner])
    };
    let bool_value: &[u8] = &[0x20, 0x01]; // 4 bool_value
    let list_value = bytes(&[&[0x32, 4], &[0x0a, 2], bool_value]); // 6 list_value { 1 values }
    let number_value: &[u8] = &[0x11, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]; // 2 number_value, fixed64 1.5
    let inner_struct = bytes(&[&[0x0a, 8, 0x0a, 1], b"k", &[0x12, 3, 0x1a, 1], b"v"]);
    let struct_value = bytes(&[&[0x2a, inner_struct.len() as u8], &inner_struct]); // 5 struct_value
    let null_value: &[u8] = &[0x08, 0x00]; // 1 null_value (a oneof: sent even when 0)
    let golden = bytes(&[
        &entry(b"b", bool_value),
        &entry(b"l", &list_value),
        &entry(b"n", number_value),
        &entry(b"o", &struct_value),
        &entry(b"z", null_value),
    ]);
    check(message, &golden);
}

fn timestamp(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

#[test]
fn task_state_with_timestamps_and_steps() {
    let message = TaskState {
        id: 1,
        result: TaskResult::Success as i32,
        started_at: timestamp(1_700_000_000, 500_000_000),
        stopped_at: timestamp(1_700_000_060, 0),
        steps: vec![StepState {
            id: 0,
            result: TaskResult::Failure as i32,
            started_at: timestamp(1_700_000_000, 0),
            stopped_at: timestamp(1_700_000_060, 0),
            log_index: 2,
            log_length: 3,
        }],
    };
    let started: &[u8] = &[0x80, 0xe2, 0xcf, 0xaa, 0x06]; // varint 1_700_000_000
    let stopped: &[u8] = &[0xbc, 0xe2, 0xcf, 0xaa, 0x06]; // varint 1_700_000_060
    let half_second: &[u8] = &[0x80, 0xca, 0xb5, 0xee, 0x01]; // varint 500_000_000
    let step = bytes(&[
        // 1 id = 0 is the default: not sent
        &[0x10, 2], // 2 result = FAILURE
        &[0x1a, 6, 0x08],
        started, // 3 started_at { 1 seconds }
        &[0x22, 6, 0x08],
        stopped,    // 4 stopped_at
        &[0x28, 2], // 5 log_index
        &[0x30, 3], // 6 log_length
    ]);
    let golden = bytes(&[
        &[0x08, 1], // 1 id
        &[0x10, 1], // 2 result = SUCCESS
        &[0x1a, 12, 0x08],
        started,
        &[0x10],
        half_second, // 3 started_at { 1 seconds, 2 nanos }
        &[0x22, 6, 0x08],
        stopped, // 4 stopped_at
        &[0x2a, step.len() as u8],
        &step, // 5 steps
    ]);
    check(message, &golden);
}

#[test]
fn update_task_request_and_response() {
    check(
        UpdateTaskRequest {
            state: Some(TaskState {
                id: 1,
                ..TaskState::default()
            }),
            outputs: [("k".to_owned(), "v".to_owned())].into(),
        },
        &bytes(&[
            &[0x0a, 2, 0x08, 1],
            &[0x12, 6, 0x0a, 1],
            b"k",
            &[0x12, 1],
            b"v",
        ]),
    );
    check(
        UpdateTaskResponse {
            state: Some(TaskState {
                id: 1,
                result: TaskResult::Cancelled as i32,
                ..TaskState::default()
            }),
            sent_outputs: strings(&["k", "l"]),
        },
        &bytes(&[
            &[0x0a, 4, 0x08, 1, 0x10, 3],
            &[0x12, 1],
            b"k",
            &[0x12, 1],
            b"l",
        ]),
    );
}

#[test]
fn update_log_request_and_response() {
    let row = bytes(&[&[0x0a, 2, 0x08, 1], &[0x12, 2], b"hi"]); // LogRow { 1 time, 2 content }
    check(
        UpdateLogRequest {
            task_id: 1,
            index: 2,
            rows: vec![LogRow {
                time: timestamp(1, 0),
                content: "hi".into(),
            }],
            no_more: true,
        },
        &bytes(&[&[0x08, 1, 0x10, 2], &[0x1a, 8], &row, &[0x20, 1]]),
    );
    check(UpdateLogResponse { ack_index: 3 }, &[0x08, 3]);
    // ack_index 0 is an empty body.
    check(UpdateLogResponse { ack_index: 0 }, &[]);
}

#[test]
fn ping_messages() {
    check(
        PingRequest { data: "x".into() },
        &bytes(&[&[0x0a, 1], b"x"]),
    );
    check(
        PingResponse {
            data: "Hello, x!".into(),
        },
        &bytes(&[&[0x0a, 9], b"Hello, x!"]),
    );
}

#[test]
fn enums_have_the_spec_values_and_unknown_values_survive() {
    let results = [
        (TaskResult::Unspecified, 0),
        (TaskResult::Success, 1),
        (TaskResult::Failure, 2),
        (TaskResult::Cancelled, 3),
        (TaskResult::Skipped, 4),
    ];
    for (result, value) in results {
        assert_eq!(result as i32, value);
    }
    let statuses = [
        (RunnerStatus::Unspecified, 0),
        (RunnerStatus::Idle, 1),
        (RunnerStatus::Active, 2),
        (RunnerStatus::Offline, 3),
    ];
    for (status, value) in statuses {
        assert_eq!(status as i32, value);
    }
    assert_eq!(TaskResult::Cancelled.as_str_name(), "RESULT_CANCELLED");
    // A future server value (e.g. 8) is kept as a number, not an error.
    let state = TaskState::decode(&[0x10, 0x08][..]).unwrap();
    assert_eq!(state.result, 8);
    assert!(TaskResult::try_from(state.result).is_err());
}
