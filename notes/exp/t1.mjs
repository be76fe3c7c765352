import * as ort from 'onnxruntime-node';
console.log(ort.listSupportedBackends(), ort.env.versions);
