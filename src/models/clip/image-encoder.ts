import { GraphBuilder } from '../../onnx/graph-builder.js';
import { visionEmbeddings, visionTower } from './graph.js';
import type { ClipModel } from './model.js';
import { layerRun, visionEmbeddingsWeights, visionHeadWeights } from './weights.js';

/** The image tower as one standalone ONNX graph, weights baked in: pixel_values → image_embeds, image_embeds_local. */
export function clipImageEncoderOnnx(model: ClipModel): Uint8Array {
  const c = model.config;
  const v = c.vision_config;
  const grid = model.grid;
  const g = new GraphBuilder('setar_image_encoder');
  g.bakeWeights = (name) => model.matrix(name).data;
  const px = g.input('pixel_values', 'FLOAT', ['batch', v.num_channels, v.image_size, v.image_size]);
  const h0 = visionEmbeddings(g, px, visionEmbeddingsWeights(model.source), { hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid, eps: v.layer_norm_eps });
  const out = visionTower(g, h0, layerRun(model.source, c, 'vision', 0, v.num_hidden_layers), visionHeadWeights(model.source, c), { heads: v.num_attention_heads, eps: v.layer_norm_eps, act: v.hidden_act, causal: false }, { grid, local: true });
  g.output(out.image_embeds, 'image_embeds', 'FLOAT', ['batch', c.projection_dim]);
  g.output(out.image_embeds_local!, 'image_embeds_local', 'FLOAT', ['batch', grid, grid, c.projection_dim]);
  return g.toBytes();
}
